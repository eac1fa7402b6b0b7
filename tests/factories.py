"""factory_boy factories for the catalogue."""
from __future__ import annotations

import factory

from labelapp.models import Category, Label, LegacyRule, Product, split_for
from labelapp.services.categories import category_path_ensure


def category(path: str, *, exclusive: bool | None = None) -> Category:
    """Return the node for 'A > B > C', creating it; exclusive defaults to 'is a leaf'."""
    node = category_path_ensure(names=path.split(" > "))
    node.refresh_from_db()
    if exclusive is not None:
        node.is_exclusive = exclusive
        node.save(update_fields=["is_exclusive"])
    return node


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    source = "test"
    external_id = factory.Sequence(lambda n: f"p{n}")
    title = factory.Sequence(lambda n: f"Product {n}")
    raw = factory.LazyAttribute(lambda o: {"id": o.external_id, "title": o.title})
    split = factory.LazyAttribute(lambda o: split_for(source=o.source, external_id=o.external_id))


class LegacyRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LegacyRule

    name = factory.Sequence(lambda n: f"rule-{n}")
    conditions = factory.LazyAttribute(lambda o: [{"field": "title", "op": "contains_word", "value": "shirt"}])


class LabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Label

    product = factory.SubFactory(ProductFactory)
