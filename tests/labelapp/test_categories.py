import pytest

from labelapp.catalogue.models import Category
from labelapp.catalogue.services.categories import category_path_ensure

pytestmark = pytest.mark.django_db


def test_path_ensure_builds_lineage_and_level_pointers():
    leaf = category_path_ensure(names=["Apparel", "Topwear", "Shirts", "Formal Shirts"], external_id="g-42")

    apparel = Category.objects.get(full_path="Apparel")
    topwear = Category.objects.get(full_path="Apparel > Topwear")
    shirts = Category.objects.get(full_path="Apparel > Topwear > Shirts")
    assert leaf.external_id == "g-42"
    assert leaf.depth == 4
    assert leaf.lineage == [apparel.id, topwear.id, shirts.id, leaf.id]
    assert (leaf.level2_id, leaf.level3_id) == (topwear.id, shirts.id)
    assert (topwear.level2_id, topwear.level3_id) == (topwear.id, None)
    assert apparel.is_leaf is False and leaf.is_leaf is True


def test_path_ensure_is_idempotent_and_subtree_query_uses_lineage():
    first = category_path_ensure(names=["Shoes", "Sneakers"])
    again = category_path_ensure(names=["Shoes", "Sneakers"])
    category_path_ensure(names=["Shoes", "Boots"])
    category_path_ensure(names=["Bags"])

    assert first.id == again.id
    shoes = Category.objects.get(full_path="Shoes")
    subtree = set(Category.objects.filter(lineage__contains=[shoes.id]).values_list("name", flat=True))
    assert subtree == {"Shoes", "Sneakers", "Boots"}


def test_path_ensure_rejects_empty_names():
    with pytest.raises(ValueError):
        category_path_ensure(names=["Shoes", " "])
