"""A whole labelling round on a real worker over the real broker: fill → label → close → retrain → next round."""
from __future__ import annotations

import time

import pytest

from classifier.models import ModelVersion, TrainStatus
from labelapp.workflow.models import LabellingRound, QueueItem, RoundStatus
from labelapp.workflow.services.queue import queue_item_submit, queue_items_lease
from labelapp.workflow.services.rounds import labelling_round_create
from tests.classifier.conftest import CLASSES, FAST, FEATURES, catalogue  # noqa: F401 — the fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def worker_features(tmp_path_factory, monkeypatch):
    """The small feature config, for the worker too: it reads its settings from the environment at start-up."""
    path = tmp_path_factory.mktemp("features") / "features.toml"
    path.write_text(FEATURES)
    monkeypatch.setenv("CLASSIFIER_FEATURE_CONFIG", str(path))
    return path


def _wait_for(condition, *, worker: dict, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{worker['log'].read_text()[-4000:]}")
        time.sleep(0.3)


def test_closing_a_round_retrains_and_opens_the_next_round_scored_by_the_new_model(
        worker_features, celery_worker_process, catalogue, make_user, settings):  # noqa: F811
    categories, products = catalogue
    settings.CLASSIFIER_FEATURE_CONFIG = worker_features
    labeller = make_user("lab")
    truth = {product.pk: categories[path] for product, path in products}

    # Cold start (no model yet): the worker fills the round at random.
    first = labelling_round_create(strategy_mix={"entropy": 1.0}, batch_size=6, objectives=["exclusive"],
                                   architecture="logreg", options={"training": dict(FAST), "seed": 5})
    _wait_for(lambda: QueueItem.objects.filter(round=first).count() == 6, worker=celery_worker_process,
              timeout=90, what="the first round to be filled")
    assert set(QueueItem.objects.filter(round=first).values_list("strategy", flat=True)) == {"random"}

    # Label every item; the last submit closes the round, which retrains on the worker.
    first.refresh_from_db()
    while held := queue_items_lease(user=labeller, round=first, count=1):
        queue_item_submit(item_id=held[0].pk, user=labeller, category=truth[held[0].product_id], time_spent_ms=500)

    finished = _wait_for(
        lambda: LabellingRound.objects.filter(pk=first.pk, status__in=[RoundStatus.CLOSED, RoundStatus.FAILED]).first(),
        worker=celery_worker_process, timeout=240, what="the round to close and retrain")
    assert finished.status == RoundStatus.CLOSED, finished.error
    assert finished.close_reason == "every item labelled"
    run = finished.train_run
    assert (run.status, run.trigger, run.params["round"]) == (TrainStatus.SUCCEEDED, "round", first.number)
    version = ModelVersion.objects.get(is_active=True)
    assert version.train_run == run

    # The next round opened with the same settings and was filled from the new model's scores.
    following = _wait_for(lambda: LabellingRound.objects.filter(previous=first, items__isnull=False).first(),
                          worker=celery_worker_process, timeout=120, what="the next round to be filled")
    assert following.status == RoundStatus.OPEN and following.model_version == version
    assert (following.strategy_mix, following.batch_size, following.architecture) == ({"entropy": 1.0}, 6, "logreg")
    items = list(QueueItem.objects.filter(round=following))
    assert len(items) == 6 and {item.strategy for item in items} == {"entropy"}
    assert all(item.score is not None for item in items)
    assert not {item.product_id for item in items} & set(QueueItem.objects.filter(round=first)
                                                        .values_list("product_id", flat=True))
    assert len(CLASSES) == len(version.classes)
