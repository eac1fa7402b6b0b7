from io import StringIO

import pytest
from django.core.management import call_command

from labelapp.catalogue.models import CategorySource, Label, LabelStrategy
from tests.factories import ProductFactory, category


@pytest.mark.django_db
def test_import_ground_truth_labels_exclusive_feed_categories_of_one_split(make_user):
    leaf = category("Apparel > Topwear > Shirts", exclusive=True)
    branch = category("Apparel > Topwear", exclusive=False)
    test_products = [ProductFactory(split="test", feed_category=leaf) for _ in range(3)]
    coarse = ProductFactory(split="test", feed_category=branch)
    dev = ProductFactory(split="dev", feed_category=leaf)
    already = ProductFactory(split="test", feed_category=leaf)
    other = category("Apparel > Topwear > Tshirts", exclusive=True)
    Label.objects.create(product=already, category=other, labeller=make_user("lab"))

    out = StringIO()
    call_command("import_ground_truth", "--from-feed", "--split", "test", stdout=out)

    assert "Labelled 3 products" in out.getvalue() and "1 already had a label" in out.getvalue()
    assert "1 have no exclusive feed category" in out.getvalue()
    for product in test_products:
        product.refresh_from_db()
        label = product.labels.get()
        assert (label.category, label.strategy, product.category, product.category_source) == (
            leaf, LabelStrategy.IMPORT, leaf, CategorySource.LABEL)
        assert product.level2_id == leaf.level2_id
    assert not coarse.labels.exists() and not dev.labels.exists()
    assert already.labels.get().category == other


@pytest.mark.django_db
def test_import_ground_truth_limit_takes_a_fixed_sample():
    leaf = category("Apparel > Topwear > Shirts", exclusive=True)
    products = [ProductFactory(split="dev", feed_category=leaf) for _ in range(10)]

    call_command("import_ground_truth", "--from-feed", "--split", "dev", "--limit", "4", stdout=StringIO())
    first = set(Label.objects.values_list("product_id", flat=True))
    Label.objects.all().delete()
    call_command("import_ground_truth", "--from-feed", "--split", "dev", "--limit", "4", stdout=StringIO())

    assert len(first) == 4 and set(Label.objects.values_list("product_id", flat=True)) == first
    assert first <= {p.id for p in products}
