"""`load_demo` runs each step once: a second `make demo` changes nothing, whatever was imported or labelled since."""
from __future__ import annotations

import pytest
from django.core.management import call_command

from classifier.models import ModelVersion, Prediction
from labelapp.catalogue.models import Category, Label, Product, Split
from labelapp.workflow.models import LabellingRound, SetupStep

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _state() -> dict:
    return {
        "products": Product.objects.count(), "labels": Label.objects.count(), "categories": Category.objects.count(),
        "versions": ModelVersion.objects.count(), "rounds": LabellingRound.objects.count(),
        "predictions": Prediction.objects.count(),
        "effective": sorted(Product.objects.values_list("id", "category_id", "category_source")),
    }


def test_a_second_load_changes_nothing_and_never_labels_products_imported_since(capsys):
    call_command("load_demo")
    assert set(SetupStep.objects.values_list("name", flat=True)) == {
        "demo:taxonomy", "demo:products", "demo:rules", "demo:similarity", "demo:ground-truth", "demo:first-model",
        "demo:first-round"}
    assert Label.objects.filter(strategy="import").exists() and ModelVersion.objects.count() == 1
    # Since: a product of the same feed arrives with an exclusive feed category in the test split.
    leaf = Category.objects.filter(is_exclusive=True).first()
    newcomer = Product.objects.create(source="myntra", external_id="later-1", title="Later Shirt", raw={},
                                      feed_category=leaf, split=Split.TEST)
    before = _state()
    capsys.readouterr()

    call_command("load_demo")

    assert "loaded already" in capsys.readouterr().out
    assert _state() == before
    assert not Label.objects.filter(product=newcomer).exists()
