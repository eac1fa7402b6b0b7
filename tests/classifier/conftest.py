"""A small labelled catalogue in Postgres for the classifier's Django shell."""
from __future__ import annotations

import random

import pytest

from labelapp.catalogue.models import LabelStrategy, RuleLabel, Split
from labelapp.catalogue.services.labels import label_create

CLASSES = {
    "Apparel > Topwear > Shirts": ("shirt", "collar", "cotton"),
    "Apparel > Bottomwear > Jeans": ("jeans", "denim", "slim"),
    "Accessories > Watches > Watches": ("watch", "dial", "steel"),
}
NOISE = ("red", "blue", "classic", "new", "men", "women", "casual")
# Quick to train: a few epochs of the linear model learn the keyword classes.
# No early stopping (patience = epochs): the tiny validation slice is too noisy to stop on.
FAST = {"epochs": 12, "batch_size": 32, "learning_rate": 0.05, "random_state": 3, "patience": 12}
FEATURES = """
[fields.title]
kind = "text"
representation = "tfidf"
max_tokens = 500

[fields.gender]
kind = "categorical"
representation = "onehot"
"""


@pytest.fixture
def catalogue(db, settings, tmp_path):
    """Return (categories by path, products) — 240 products, labelled in part, every one seen by a rule."""
    from tests.factories import LegacyRuleFactory, ProductFactory, category

    config = tmp_path / "features.toml"
    config.write_text(FEATURES)
    settings.CLASSIFIER_FEATURE_CONFIG = config
    rng = random.Random(0)
    categories = {path: category(path, exclusive=True) for path in CLASSES}
    rules = {path: LegacyRuleFactory(name=f"rule {path}", category=categories[path]) for path in CLASSES}
    products = []
    for n in range(240):
        path = list(CLASSES)[n % 3]
        words = [rng.choice(CLASSES[path]), rng.choice(CLASSES[path]), rng.choice(NOISE), rng.choice(NOISE)]
        rng.shuffle(words)
        product = ProductFactory(title=" ".join(words), gender=rng.choice(["Men", "Women"]))
        products.append((product, path))
        RuleLabel.objects.create(product=product, rule=rules[path], category=categories[path])
    from django.contrib.auth.models import User

    labeller = User.objects.create_user(username="catalogue-labeller")
    labelled = [(p, path) for i, (p, path) in enumerate(products) if p.split == Split.TEST or i % 2 == 0]
    for product, path in labelled:
        label_create(product=product, category=categories[path], user=labeller, strategy=LabelStrategy.RANDOM)
    return categories, products
