"""Tiny synthetic products for the classifier core; no Django, no database, no Redis.

The classifiers are fitted once per session (`trained`) and shared by the tests that only read them.
"""
from __future__ import annotations

import numpy as np
import pytest

CLASS_WORDS = (("shirt", "collar", "cotton"), ("jeans", "denim", "slim"), ("watch", "dial", "steel"))
NOISE_WORDS = ("red", "blue", "classic", "new", "men", "women")
IMAGE_DIM = 8
# Fast enough to overfit 60 products in a few epochs, small enough to keep the whole folder well under 90 s.
# The batch size divides 60, so each fit traces its training step once.
TRAINING = dict(epochs=12, batch_size=20, learning_rate=0.03, validation_fraction=0.0, random_state=7)


@pytest.fixture(autouse=True)
def _media_in_tmp():
    """Override the project's autouse fixture: core tests need no Django settings."""


@pytest.fixture(autouse=True)
def _clear_cache():
    """Override the project's autouse fixture: core tests need no cache server."""


def _make_products(n: int = 60, *, seed: int = 0):
    """Return (ProductFrame, Targets, class index int [n]) of n products whose title words give the class."""
    from classifier.core.frames import ProductFrame, Targets

    rng = np.random.default_rng(seed)
    classes = np.arange(n) % 3
    titles = [" ".join([*rng.choice(CLASS_WORDS[c], 2, replace=False), str(rng.choice(NOISE_WORDS))])
              for c in classes]
    brands = ["" if i % 4 == 0 else ("acme", "denimco", "tick")[c] for i, c in enumerate(classes)]
    image = (np.eye(IMAGE_DIM, dtype=np.float32)[classes] + 0.05 * rng.normal(size=(n, IMAGE_DIM))).astype(np.float32)
    frame = ProductFrame(title=titles, brand=brands, gender=[("Men", "Women")[i % 2] for i in range(n)],
                         description=[None] * n, image=image, image_present=np.ones(n))
    targets = Targets(exclusive=classes, classes=("shirts", "jeans", "watches"),
                      rule=np.eye(3, dtype=np.float32)[classes], rule_known=np.ones(n, bool),
                      rule_classes=("shirts", "jeans", "watches"))
    return frame, targets, classes


def make_config():
    """Return a config with every kind of field: TF-IDF + token sequence of the title, bag of words, categoricals, image."""
    from classifier.core.config import FeatureConfig, FieldSpec, ModelParams

    return FeatureConfig(
        fields=(
            FieldSpec(name="title", kind="text", representation="tfidf", max_tokens=200, ngrams=(1, 2)),
            FieldSpec(name="title_tokens", column="title", kind="text", representation="sequence",
                      max_tokens=50, sequence_length=6, embedding_dim=8),
            FieldSpec(name="description", kind="text", representation="bow", max_tokens=50),
            FieldSpec(name="brand", kind="categorical", representation="embedding", max_values=10, embedding_dim=3),
            FieldSpec(name="gender", kind="categorical", representation="onehot"),
            FieldSpec(name="image", kind="dense", representation="embedding", dim=IMAGE_DIM),
        ),
        model=ModelParams(hidden_units=16, encoder_units=8, conv_filters=8, conv_widths=(2, 3), rnn_units=8,
                          dropout=0.0),
    )


@pytest.fixture(scope="session")
def make_products():
    """Return the factory (n, *, seed) -> (ProductFrame, Targets, class index int [n])."""
    return _make_products


@pytest.fixture(scope="session")
def products():
    return _make_products()


@pytest.fixture(scope="session")
def training():
    """Return the fit parameters of the tiny tests."""
    return dict(TRAINING)


@pytest.fixture(scope="session")
def title_only_config():
    from classifier.core.config import FeatureConfig, FieldSpec

    return FeatureConfig(fields=(FieldSpec(name="title", kind="text", representation="tfidf", max_tokens=100),))


@pytest.fixture(scope="session")
def config():
    return make_config()


@pytest.fixture(scope="session")
def trained(products, config):
    """Return a function architecture -> ProductClassifier fitted (once) on `products` with both objectives."""
    from classifier.core.estimator import ProductClassifier

    frame, targets, _ = products
    fitted = {}

    def get(architecture: str) -> ProductClassifier:
        if architecture not in fitted:
            progress = []
            classifier = ProductClassifier(config=config, architecture=architecture,
                                           objectives=("exclusive", "rule"), **TRAINING)
            fitted[architecture] = classifier.fit(frame, targets, progress=lambda epoch, logs: progress.append(epoch))
            classifier.progress_calls = progress
        return fitted[architecture]

    return get
