"""A database created at the schema before the app split migrates forward with nothing lost.

`tests/migrations_legacy/` holds the migrations of the labelapp, classifier and similarity apps exactly as they
were before the labelling workflow moved into its own app (labelapp 0001–0005, classifier 0001, similarity
0001). The test builds a fresh database with them, fills it through their historical models, then migrates it
with the project's migrations and checks every row, the rounds' tables, the labels' round / model version /
time spent, and the active model's categories on the products.
"""
from __future__ import annotations

import os

import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

LEGACY = {**{app: f"tests.migrations_legacy.{app}" for app in ("labelapp", "classifier", "similarity")},
          "common": None, "workflow": None}  # apps that did not exist yet
LEGACY_TARGETS = [("labelapp", "0005_labelling_undo_and_claim_index"), ("classifier", "0001_initial"),
                  ("similarity", "0001_initial")]
ALIAS = "forward_migration"

pytestmark = pytest.mark.slow


@pytest.fixture
def fresh_database(django_db_blocker):
    """Create an empty database beside the test database, under its own connection alias; drop it afterwards."""
    base = dict(connections["default"].settings_dict)
    name = f"{base['NAME']}_forward_{os.getpid()}"
    with django_db_blocker.unblock():
        with connections["default"]._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'CREATE DATABASE "{name}"')
        connections.settings[ALIAS] = {**base, "NAME": name, "TEST": {}}
        try:
            yield connections[ALIAS]
        finally:
            connections[ALIAS].close()
            del connections[ALIAS]
            connections.settings.pop(ALIAS, None)
            with connections["default"]._nodb_cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _legacy_data(apps) -> dict:
    """Write a small catalogue with a round, its queue, labels, a trained model and its predictions."""
    objects = lambda app, model: apps.get_model(app, model).objects.using(ALIAS)  # noqa: E731
    user = objects("auth", "User").create(username="ann")
    root = objects("labelapp", "Category").create(external_id="a", name="Apparel", full_path="Apparel", depth=1)
    shirts = objects("labelapp", "Category").create(external_id="s", name="Shirts", full_path="Apparel > Shirts",
                                                    parent=root, depth=2, is_exclusive=True)
    jeans = objects("labelapp", "Category").create(external_id="j", name="Jeans", full_path="Apparel > Jeans",
                                                   parent=root, depth=2, is_exclusive=True)
    for node in (shirts, jeans):
        node.lineage, node.level2 = [root.id, node.id], node
        node.save()
    products = [objects("labelapp", "Product").create(source="shop", external_id=str(i), raw={"i": i}, title=f"p{i}",
                                                      split="dev", feed_category=shirts, category=shirts,
                                                      category_source="feed", level2=shirts)
                for i in range(3)]
    run = objects("classifier", "TrainRun").create(architecture="logreg", objectives=["exclusive"],
                                                   feature_config="", status="succeeded")
    version = objects("classifier", "ModelVersion").create(name="v1", train_run=run, architecture="logreg",
                                                           artefact_path="/nowhere", classes=[shirts.id, jeans.id],
                                                           is_active=True)
    for product in products:
        objects("classifier", "Prediction").create(model_version=version, product=product, category=jeans,
                                                   confidence=0.7, top_k=[[jeans.id, 0.7], [shirts.id, 0.3]])
    round = objects("labelapp", "LabellingRound").create(number=1, strategy_mix={"margin": 1.0}, batch_size=2,
                                                         objectives=["exclusive"], model_version=version)
    queued = objects("labelapp", "Label").create(product=products[0], category=shirts, labeller=user,
                                                 strategy="margin", round=round, model_version=version,
                                                 time_spent_ms=2300)
    manual = objects("labelapp", "Label").create(product=products[1], category=jeans, labeller=user)
    objects("labelapp", "QueueItem").create(round=round, product=products[0], strategy="margin", position=0,
                                            status="done", label=queued, leased_to=user)
    objects("labelapp", "QueueItem").create(round=round, product=products[2], strategy="margin", position=1)
    rule = objects("labelapp", "LegacyRule").create(name="shirt", category=shirts,
                                                    conditions=[{"field": "title", "op": "contains", "value": "p"}])
    objects("labelapp", "RuleLabel").create(product=products[2], category=shirts, rule=rule)
    return {"products": [p.id for p in products], "round": round.id, "version": version.id, "queued": queued.id,
            "manual": manual.id, "shirts": shirts.id, "jeans": jeans.id, "user": user.id}


def _migrate(connection, targets=None):
    executor = MigrationExecutor(connection)
    if targets is not None:  # Django's own apps first: the legacy migrations used them without saying so
        targets = [leaf for leaf in executor.loader.graph.leaf_nodes() if leaf[0] in ("contenttypes", "auth")] + targets
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor


def test_a_database_at_the_previous_schema_migrates_forward_with_nothing_lost(fresh_database, settings):
    settings.MIGRATION_MODULES = LEGACY
    executor = _migrate(fresh_database, LEGACY_TARGETS)
    legacy_apps = executor.loader.project_state(LEGACY_TARGETS).apps
    ids = _legacy_data(legacy_apps)
    # Django creates content types after a migrate command (post_migrate); here the test does.
    round_type = legacy_apps.get_model("contenttypes", "ContentType").objects.using(ALIAS).create(
        app_label="labelapp", model="labellinground")
    legacy_apps.get_model("auth", "Group").objects.using(ALIAS).create(name="round-admins").permissions.add(
        legacy_apps.get_model("auth", "Permission").objects.using(ALIAS).create(
            content_type=round_type, codename="view_labellinground", name="Can view labelling round"))

    settings.MIGRATION_MODULES = {}
    executor = _migrate(fresh_database)

    apps = executor.loader.project_state(executor.loader.graph.leaf_nodes()).apps
    objects = lambda app, model: apps.get_model(app, model).objects.using(ALIAS)  # noqa: E731
    assert objects("labelapp", "Product").count() == 3 and objects("labelapp", "Label").count() == 2
    assert objects("labelapp", "RuleLabel").count() == 1 and objects("classifier", "Prediction").count() == 3
    round = objects("workflow", "LabellingRound").get()
    assert (round.id, round.number, round.model_version_id) == (ids["round"], 1, ids["version"])
    items = list(objects("workflow", "QueueItem").order_by("position").values_list("product_id", "status", "label_id"))
    assert items == [(ids["products"][0], "done", ids["queued"]), (ids["products"][2], "pending", None)]
    contexts = list(objects("workflow", "LabelContext").values_list("label_id", "round_id", "model_version_id",
                                                                    "time_spent_ms"))
    assert contexts == [(ids["queued"], ids["round"], ids["version"], 2300)]  # the manual label had none
    # The active model's category moved onto the products, every category copy is to be re-synced once.
    model = set(objects("labelapp", "Product").values_list("model_category_id", "model_confidence", "category_dirty"))
    assert model == {(ids["jeans"], 0.7, True)}
    # Permissions granted on the moved models still hold: their content type moved with them.
    moved = objects("contenttypes", "ContentType").get(model="labellinground")
    assert moved.app_label == "workflow" and moved.id == round_type.id
    assert objects("auth", "Group").get(name="round-admins").permissions.get().content_type_id == round_type.id
    with fresh_database.cursor() as cursor:
        tables = fresh_database.introspection.table_names(cursor)
        columns = {column.name for column in fresh_database.introspection.get_table_description(cursor,
                                                                                                "labelapp_label")}
    assert "labelapp_labellinground" not in tables and "workflow_labellinground" in tables
    assert not {"round_id", "model_version_id", "time_spent_ms"} & columns
    # A second migrate has nothing left to do.
    assert not MigrationExecutor(fresh_database).migration_plan(executor.loader.graph.leaf_nodes())
