"""Training through the real broker and a real worker: an API request ends in a promoted model."""
from __future__ import annotations

import time

import pytest

from classifier.models import ModelVersion, Prediction, TrainRun, TrainStatus
from labelapp.common.roles import REVIEWER
from tests.classifier.conftest import catalogue  # noqa: F401  (the labelled catalogue fixture)

pytestmark = pytest.mark.integration


def _wait_finished(run_id: int, worker, timeout: float = 300) -> TrainRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = TrainRun.objects.get(id=run_id)
        if run.is_finished:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish: {worker['log'].read_text()[-3000:]}")


def test_an_api_request_trains_on_the_worker_and_a_duplicate_delivery_is_harmless(
        catalogue, celery_worker_process, make_user, api_client):
    from classifier.tasks import train_run_execute_task

    api_client.force_authenticate(make_user("rev", REVIEWER))
    response = api_client.post("/api/v1/train-runs/", {"architecture": "logreg", "objectives": ["exclusive", "rule"],
                                                       "epochs": 12, "batch_size": 32, "learning_rate": 0.05},
                               format="json")
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    train_run_execute_task.delay(run_id)  # the same message delivered twice (e.g. a broker redelivery)

    run = _wait_finished(run_id, celery_worker_process)
    # Let the duplicate be consumed too before checking that it changed nothing.
    deadline = time.monotonic() + 60
    while "succeeded" not in celery_worker_process["log"].read_text().split("train_run_execute_task")[-1] \
            and time.monotonic() < deadline:
        time.sleep(0.5)

    assert run.status == TrainStatus.SUCCEEDED, run.error
    assert ModelVersion.objects.filter(train_run_id=run_id).count() == 1
    version = ModelVersion.objects.get(is_active=True)
    assert version.train_run_id == run_id
    assert Prediction.objects.filter(model_version=version).count() == len(catalogue[1])
    assert run.metrics["ground_truth"]["exclusive"]["accuracy"] >= 0.85
    assert api_client.get(f"/api/v1/train-runs/{run_id}/").json()["status"] == "succeeded"
