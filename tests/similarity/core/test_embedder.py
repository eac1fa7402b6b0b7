"""EfficientNet-Lite0 in Keras: real ImageNet weights, stable L2-normalised embeddings."""

from __future__ import annotations

import ast
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from similarity.core import embedder as embedder_module
from similarity.core.backbones import BACKBONES, EFFICIENTNET_LITE0, MODEL_VERSION
from similarity.core.embedder import ImageEmbedder, build_backbone, load_legacy_torch_state_dict, measure_throughput

skimage_data = pytest.importorskip("skimage.data")

# ImageNet-1k class indices (ILSVRC2012 order, as in Keras' imagenet_class_index.json):
# 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso, 968 cup.
CAT_CLASSES = {281, 282, 285}
COFFEE_CLASSES = {967, 968}


def encode_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def embedder() -> ImageEmbedder:
    # A small batch size makes the 10-image tests below span several pipelined batches.
    return ImageEmbedder(batch_size=4, workers=2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        paths[name] = folder / f"{name}.jpg"
        paths[name].write_bytes(encode_jpeg(getattr(skimage_data, name)()))
    return paths


def test_registry_and_model_version():
    assert BACKBONES["efficientnet_lite0"] is EFFICIENTNET_LITE0
    assert EFFICIENTNET_LITE0.dim == 1280 and EFFICIENTNET_LITE0.input_size == 224
    assert MODEL_VERSION == "efficientnet_lite0-57934424"
    assert EFFICIENTNET_LITE0.weights_path().is_file()


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="unknown backbone"):
        ImageEmbedder(backbone="resnet9000")


def test_legacy_state_dict_is_read_without_torch():
    state = load_legacy_torch_state_dict(EFFICIENTNET_LITE0.weights_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert state["_bn0.num_batches_tracked"].shape == ()
    assert np.isfinite(state["_conv_head.weight"]).all()


def _legacy_file(tmp_path: Path, main_record: bytes) -> Path:
    buffer = io.BytesIO()
    for header in (embedder_module._LEGACY_MAGIC_NUMBER, 1001, {"little_endian": True}):
        pickle.dump(header, buffer, protocol=2)
    buffer.write(main_record)
    path = tmp_path / "evil.pth"
    path.write_bytes(buffer.getvalue())
    return path


def test_unpickler_refuses_globals_outside_the_allow_list(tmp_path):
    import os

    malicious = pickle.dumps(os.system, protocol=2)  # a reference to posix.system
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_legacy_torch_state_dict(_legacy_file(tmp_path, malicious))


def test_non_legacy_files_are_rejected(tmp_path):
    path = tmp_path / "zip.pth"
    path.write_bytes(pickle.dumps("not the magic number", protocol=2))
    with pytest.raises(ValueError, match="legacy"):
        load_legacy_torch_state_dict(path)


def test_tf_same_padding_puts_the_extra_pixel_after():
    pad = embedder_module._tf_same_padding
    assert pad(size=224, kernel_size=3, stride=2) == (0, 1)
    assert pad(size=56, kernel_size=5, stride=2) == (1, 2)
    assert pad(size=28, kernel_size=5, stride=1) == (2, 2)
    assert pad(size=7, kernel_size=1, stride=1) == (0, 0)


def test_imagenet_top1_proves_the_weights_are_real(embedder, photos):
    batch = np.stack([embedder.prepare(photos["chelsea"]), embedder.prepare(photos["coffee"])])
    logits = embedder.classify_arrays(batch)
    assert logits.shape == (2, 1000)
    assert int(logits[0].argmax()) in CAT_CLASSES
    assert int(logits[1].argmax()) in COFFEE_CLASSES


def test_folded_batch_norm_matches_explicit_batch_norm(embedder, photos):
    unfolded = build_backbone(config=EFFICIENTNET_LITE0, fold_batch_norm=False)
    pixels = embedder.prepare(photos["coffee"])[None]
    explicit = np.asarray(unfolded.classification.predict_on_batch(pixels))
    assert np.allclose(embedder.classify_arrays(pixels), explicit, atol=1e-3)


def test_embeddings_are_unit_length_and_deterministic(embedder, photos):
    first = embedder.embed_paths(list(photos.values()))
    second = embedder.embed_paths(list(photos.values()))
    assert first.errors == {}
    assert first.vectors.shape == (4, 1280) and first.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(first.vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first.vectors, second.vectors)


def test_batched_and_single_embeddings_agree(embedder, photos):
    paths = list(photos.values())
    batched = embedder.embed_paths(paths).vectors
    singles = np.concatenate([embedder.embed_paths([path]).vectors for path in paths])
    assert np.allclose(batched, singles, atol=1e-5)
    from_arrays = embedder.embed_arrays(np.stack([embedder.prepare(path) for path in paths]))
    assert np.allclose(batched, from_arrays, atol=1e-5)


def test_bad_images_are_reported_and_the_rest_still_embedded(embedder, photos, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photos["chelsea"].read_bytes()[:500])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    good = [photos["chelsea"], photos["coffee"], photos["astronaut"], photos["rocket"]]
    # Ten inputs across three batches of four, errors in different batches and positions.
    sources = [good[0], tmp_path / "missing.jpg", good[1], good[2], truncated, good[3],
               b"not an image", good[0].read_bytes(), empty, good[1]]
    result = embedder.embed_paths(sources)
    assert set(result.errors) == {1, 4, 6, 8}
    assert result.errors[1].startswith("missing:")
    assert result.errors[4].startswith("truncated:")
    assert result.errors[6].startswith("not_an_image:")
    assert result.errors[8].startswith("empty:")
    assert not result.vectors[[1, 4, 6, 8]].any()
    reference = embedder.embed_paths(good).vectors
    expected = {0: 0, 2: 1, 3: 2, 5: 3, 7: 0, 9: 1}
    for index, good_index in expected.items():
        assert np.allclose(result.vectors[index], reference[good_index], atol=1e-5)


def test_similar_images_are_closer_than_different_ones(embedder, photos):
    chelsea = skimage_data.chelsea()
    mirrored = encode_jpeg(np.ascontiguousarray(chelsea[:, ::-1]))
    vectors = embedder.embed_paths([photos["chelsea"], mirrored, photos["coffee"]]).vectors
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_empty_inputs(embedder):
    assert embedder.embed_paths([]).vectors.shape == (0, 1280)
    assert embedder.embed_arrays(np.zeros((0, 224, 224, 3), np.float32)).shape == (0, 1280)
    with pytest.raises(ValueError, match="expected float32"):
        embedder.embed_arrays(np.zeros((1, 100, 100, 3), np.float32))


def test_measure_throughput_reports_positive_rates(embedder, photos):
    report = measure_throughput(embedder=embedder, paths=list(photos.values()), repeats=1)
    assert report.images == 4
    assert report.model_only_images_per_s > 0 and report.end_to_end_images_per_s > 0
    assert report.decode_only_images_per_s > 0 and report.overlap_efficiency > 0


def test_core_never_imports_django_or_project_apps():
    forbidden = {"django", "rest_framework", "celery", "labelapp", "config", "classifier"}
    core = Path(embedder_module.__file__).parent
    for source_file in core.glob("*.py"):
        tree = ast.parse(source_file.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            roots = {name.split(".")[0] for name in names}
            assert not roots & forbidden, f"{source_file.name} imports {roots & forbidden}"
