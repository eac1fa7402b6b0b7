"""factory_boy factories for the catalogue."""
from __future__ import annotations

import factory

from labelapp.catalogue.models import Category, Label, LegacyRule, Product, split_for
from labelapp.catalogue.services.categories import category_path_ensure


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


# --- labelling rounds, queue items, and the classifier rows the labelling UI reads -------------------------------


class LabellingRoundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "workflow.LabellingRound"

    number = factory.Sequence(lambda n: n + 1)
    strategy_mix = factory.LazyFunction(lambda: {"random": 1.0})
    batch_size = 10
    objectives = factory.LazyFunction(lambda: ["exclusive"])
    architecture = "logreg"


class QueueItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "workflow.QueueItem"

    round = factory.SubFactory(LabellingRoundFactory)
    product = factory.SubFactory(ProductFactory)
    strategy = "random"
    position = factory.Sequence(lambda n: n)


def labelling_round_with_items(n: int, *, round_kwargs: dict | None = None, **product_kwargs):
    """Return an open round and its n queue items (one new dev product each), in queue order."""
    round = LabellingRoundFactory(**{"batch_size": max(n, 1), **(round_kwargs or {})})
    items = [QueueItemFactory(round=round, position=position, product=ProductFactory(split="dev", **product_kwargs))
             for position in range(n)]
    return round, items


class TrainRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "classifier.TrainRun"

    status = "succeeded"
    stage = "done"
    architecture = "logreg"
    objectives = factory.LazyFunction(lambda: ["exclusive"])
    feature_config = ""


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "classifier.ModelVersion"

    name = factory.Sequence(lambda n: f"clf-test-{n}")
    train_run = factory.SubFactory(TrainRunFactory)
    architecture = "logreg"
    objectives = factory.LazyFunction(lambda: ["exclusive"])
    artefact_path = ""


class PredictionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "classifier.Prediction"

    model_version = factory.SubFactory(ModelVersionFactory)
    product = factory.SubFactory(ProductFactory)
