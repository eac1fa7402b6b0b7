"""Every path that changes a product's category keeps the category copies on its vectors in step.

The catalogue's one writer marks changed products dirty in the same statement; after commit the similarity app
re-syncs them (the CATEGORIES_CHANGED event), and the beat sweep catches anything a failed handler left. Each
step below is a real write path, committed as in production (transactional test).
"""
from __future__ import annotations

import numpy as np
import pytest

from classifier.models import ModelVersion
from classifier.services.promotion import model_version_promote
from labelapp.catalogue.models import CategorySource, Label, LabelStrategy, Product, Split
from labelapp.catalogue.services.ground_truth import labels_import_from_feed
from labelapp.catalogue.services.imports.products import products_import
from labelapp.catalogue.services.imports.runs import import_run_create
from labelapp.catalogue.services.labels import label_create, label_undo
from labelapp.catalogue.services.rules import rules_apply
from labelapp.common import events
from similarity.models import EmbeddingKind, ImageEmbedding
from similarity.selectors.settings import similarity_settings
from similarity.services.category_copies import embeddings_categories_sync_dirty
from similarity.services.job_chunks import halfvec_texts
from similarity.services.spaces import embedding_space_ensure
from tests.factories import LegacyRuleFactory, ModelVersionFactory, PredictionFactory, ProductFactory, category

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(make_user):
    tree = {name: category(path, exclusive=True) for name, path in (
        ("shirts", "Apparel > Topwear > Shirts"), ("jeans", "Apparel > Bottomwear > Jeans"),
        ("watches", "Accessories > Watches > Watches"))}
    products = [ProductFactory(source="shop", external_id=f"s{n}", title=f"plain item {n}", split=Split.DEV)
                for n in range(4)]
    version = similarity_settings().model_version
    embedding_space_ensure(model_version=version, kind=EmbeddingKind.IMAGE, dim=1280)
    vectors = halfvec_texts(np.random.default_rng(0).random((len(products), 1280), dtype=np.float32))
    for product, vector in zip(products, vectors):
        ImageEmbedding.objects.create(product=product, model_version=version, embedding=vector, fingerprint="t")
    return {"tree": tree, "products": products, "user": make_user("ann")}


def assert_copies_in_step(products) -> None:
    for product in products:
        product.refresh_from_db()
        row = ImageEmbedding.objects.get(product=product)
        assert (row.level2_id, row.level3_id) == (product.level2_id, product.level3_id), product
    assert not Product.objects.filter(category_dirty=True).exists()


def test_every_write_path_keeps_the_vector_copies_in_step(world, tmp_path):
    tree, products, user = world["tree"], world["products"], world["user"]
    first, second, third, fourth = products

    label = label_create(product=first, category=tree["shirts"], user=user)  # a label
    assert_copies_in_step(products)
    assert first.level3_id == tree["shirts"].level3_id

    label_undo(label=label)  # its undo
    assert_copies_in_step(products)
    assert first.category_id is None

    feed = tmp_path / "feed.csv"  # an import that gives the second product a feed category
    feed.write_text("id,title,category\ns1,plain item 1,Apparel > Bottomwear > Jeans\n")
    products_import(import_run=import_run_create(kind="products", file_name=str(feed), source="shop"), path=feed)
    assert_copies_in_step(products)
    assert (second.category_id, second.category_source) == (tree["jeans"].id, CategorySource.FEED)

    LegacyRuleFactory(category=tree["watches"], conditions=[{"field": "title", "op": "contains", "value": "item 2"}])
    rules_apply()  # a rule run (before the single writer, its copies went stale)
    assert_copies_in_step(products)
    assert (third.category_id, third.category_source) == (tree["watches"].id, CategorySource.RULE)

    Product.objects.filter(pk=fourth.pk).update(feed_category=tree["shirts"])  # imported ground truth
    assert labels_import_from_feed(source="shop", split=Split.DEV).labelled == 2
    assert_copies_in_step(products)
    assert Label.objects.filter(strategy=LabelStrategy.IMPORT).count() == 2

    old, new = ModelVersionFactory(artefact_path="/kept", predictions_count=4), \
        ModelVersionFactory(artefact_path="/kept", predictions_count=4)
    for version, guess in ((old, tree["watches"]), (new, tree["shirts"])):
        for product in products:
            PredictionFactory(model_version=version, product=product, category=guess, confidence=0.9,
                              top_k=[[guess.pk, 0.9]])
    model_version_promote(version=old)  # a promotion: the first product had no other source
    assert_copies_in_step(products)
    assert (first.category_id, first.category_source) == (tree["watches"].id, CategorySource.PREDICTION)
    model_version_promote(version=new)
    model_version_promote(version=old, force=True)  # a rollback
    assert_copies_in_step(products)
    assert ModelVersion.objects.get(is_active=True) == old and first.category_id == tree["watches"].id


def test_the_sweep_catches_copies_a_failed_handler_left_stale(world, monkeypatch):
    tree, products, user = world["tree"], world["products"], world["user"]

    def broken(**_):
        raise RuntimeError("the sync handler crashed")

    monkeypatch.setitem(events._handlers, events.CATEGORIES_CHANGED, [broken])
    label_create(product=products[0], category=tree["jeans"], user=user)  # the label itself commits

    row = ImageEmbedding.objects.get(product=products[0])
    assert row.level3_id is None and Product.objects.filter(category_dirty=True).count() == 1
    assert Label.objects.filter(product=products[0]).exists()

    assert embeddings_categories_sync_dirty() == 1  # what beat's sweep runs every minute
    assert_copies_in_step(products)
