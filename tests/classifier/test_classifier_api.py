"""REST endpoints for train runs and model versions; predictions in the product API."""
from __future__ import annotations

import pytest

from classifier.core.names import ARCHITECTURE_NAMES
from classifier.models import ModelVersion, TrainRun, TrainStatus
from classifier.services.pipeline import train_run_execute
from classifier.services.runs import train_run_create
from labelapp.common.roles import LABELLER, REVIEWER
from tests.classifier.conftest import FAST


def _as(client, user):
    client.force_authenticate(user)
    return client


def test_web_process_architecture_names_match_the_core():
    from classifier.core.architectures import ARCHITECTURES

    assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES


@pytest.mark.django_db
def test_reviewer_starts_a_run_and_the_task_is_sent_on_commit(make_user, api_client, django_capture_on_commit_callbacks,
                                                              sent_tasks):
    client = _as(api_client, make_user("rev", REVIEWER))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/train-runs/", {"architecture": "dnn", "objectives": ["exclusive", "rule"],
                                                        "epochs": 3, "max_regression": 0.02}, format="json")

    assert response.status_code == 202, response.content
    run = TrainRun.objects.get(id=response.json()["id"])
    assert sent_tasks == [("classifier.tasks.train_run_execute_task", {"train_run_id": run.id})]
    assert (run.status, run.architecture, run.objectives, run.params, run.trigger) == (
        TrainStatus.QUEUED, "dnn", ["exclusive", "rule"], {"epochs": 3}, "api")
    assert run.requested_by.username == "rev" and run.max_regression == 0.02


@pytest.mark.django_db
@pytest.mark.parametrize("payload, field", [
    ({"architecture": "transformer"}, "architecture"),
    ({"objectives": ["vibes"]}, "objectives"),
    ({"objectives": []}, "objectives"),
    ({"epochs": 0}, "epochs"),
    ({"max_regression": 3}, "max_regression"),
])
def test_bad_run_requests_get_400_with_the_field(make_user, api_client, payload, field):
    response = _as(api_client, make_user("rev", REVIEWER)).post("/api/v1/train-runs/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.django_db
def test_labellers_cannot_start_or_read_runs(make_user, api_client):
    client = _as(api_client, make_user("lab", LABELLER))
    assert client.get("/api/v1/train-runs/").status_code == 403
    assert client.post("/api/v1/train-runs/", {}, format="json").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_runs_metrics_versions_rollback_and_product_predictions(catalogue, make_user, api_client):
    categories, products = catalogue
    first = train_run_execute(train_run_id=train_run_create(architecture="logreg", objectives=["exclusive", "rule"],
                                                            params=FAST, schedule=False).id)
    second = train_run_execute(train_run_id=train_run_create(architecture="logreg", objectives=["exclusive"],
                                                             params=FAST, schedule=False).id)
    client = _as(api_client, make_user("rev", REVIEWER))

    listed = client.get("/api/v1/train-runs/").json()
    assert [run["id"] for run in listed["results"]] == [second.id, first.id]
    detail = client.get(f"/api/v1/train-runs/{first.id}/").json()
    assert detail["metrics"]["ground_truth"]["exclusive"]["accuracy"] >= 0.85
    assert detail["model_version"] == first.model_version.name and "loss" in detail["history"]
    assert client.get("/api/v1/train-runs/999999/").status_code == 404

    versions = client.get("/api/v1/model-versions/").json()["results"]
    assert [(v["name"], v["is_active"]) for v in versions] == [(second.model_version.name, True),
                                                                (first.model_version.name, False)]

    unlabelled = next(product for product, _ in products if not product.labels.exists())
    body = client.get("/api/v1/products/", {"labelled": "false"}).json()
    shown = next(item for item in body["results"] if item["id"] == unlabelled.id)
    assert shown["prediction"]["model_version"] == second.model_version.name
    assert shown["prediction"]["top_k"][0]["full_path"] in {c.full_path for c in categories.values()}
    assert shown["prediction"]["rule_positives"] == []  # the second model has no rule head
    # This catalogue's rules are always right, and measured so on its labels: no model replaces them.
    assert shown["category_source"] == "rule" and shown["category_evidence"]["precision"] > 0.9
    assert shown["category_evidence"]["labelled"] > 20 and shown["category_evidence"]["low"] > 0.8

    rolled_back = client.post(f"/api/v1/model-versions/{first.model_version.id}/activate/")
    assert rolled_back.status_code == 200 and rolled_back.json()["is_active"]
    assert ModelVersion.objects.get(is_active=True) == first.model_version
    detail = client.get(f"/api/v1/products/{unlabelled.id}/").json()
    assert detail["prediction"]["model_version"] == first.model_version.name
    assert detail["prediction"]["rule_positives"] or detail["prediction"]["rule_positives"] == []
    assert client.post("/api/v1/model-versions/424242/activate/").status_code == 404


@pytest.mark.django_db
def test_products_have_no_prediction_before_the_first_model(make_user, api_client):
    from tests.factories import ProductFactory

    product = ProductFactory()
    body = _as(api_client, make_user("rev", REVIEWER)).get(f"/api/v1/products/{product.id}/").json()
    assert body["prediction"] is None
