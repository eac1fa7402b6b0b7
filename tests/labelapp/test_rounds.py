"""Labelling rounds: create, fill (cold start and with a model), close, finish after training, continue."""
from __future__ import annotations

from collections import Counter
from unittest import mock

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from classifier.models import TrainRun
from labelapp.catalogue.models import Label, Split
from labelapp.catalogue.services.labels import label_create
from labelapp.workflow.models import LabellingRound, QueueItem, QueueItemStatus, RoundStatus
from labelapp.workflow.services.filling import labelling_round_fill
from labelapp.workflow.services.queue import queue_items_lease
from labelapp.workflow.services.rounds import (
    labelling_pool_ids,
    labelling_round_after_training,
    labelling_round_close,
    labelling_round_create,
    labelling_round_setting,
    labelling_rounds_reap,
)
from tests.factories import (
    LabellingRoundFactory,
    ModelVersionFactory,
    ProductFactory,
    TrainRunFactory,
    category,
    labelling_round_with_items,
)

pytestmark = pytest.mark.django_db

SETTINGS = {"strategy_mix": {"entropy": 0.5, "margin": 0.5}, "batch_size": 10, "objectives": ["exclusive"]}


def _dev_products(n: int, **kwargs) -> list:
    return [ProductFactory(split=Split.DEV, **kwargs) for _ in range(n)]


def test_creating_a_round_numbers_it_and_schedules_the_fill_after_commit(make_user, sent_tasks,
                                                                         django_capture_on_commit_callbacks):
    LabellingRoundFactory(number=4, status=RoundStatus.CLOSED)
    reviewer = make_user("rev")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        round = labelling_round_create(**SETTINGS, random_share=0.2, architecture="logreg", user=reviewer,
                                       options={"diversity": 0.3, "density": {"beta": 2}})

    assert (round.number, round.status, round.created_by) == (5, RoundStatus.OPEN, reviewer)
    assert round.strategy_mix == {"entropy": 0.5, "margin": 0.5} and round.random_share == 0.2
    assert len(callbacks) == 1
    assert sent_tasks == [("labelapp.workflow.tasks.labelling_round_fill_task", {"round_id": round.pk})]


@pytest.mark.parametrize("change, field", [
    ({"strategy_mix": {"entropy": 1, "crystal_ball": 1}}, "strategy_mix"),
    ({"strategy_mix": {}}, "strategy_mix"),
    ({"strategy_mix": {"entropy": 0}}, "strategy_mix"),
    ({"batch_size": 0}, "batch_size"),
    ({"objectives": ["exclusive", "vibes"]}, "objectives"),
    ({"objectives": []}, "objectives"),
    ({"random_share": 1.5}, "random_share"),
    ({"architecture": "transformer-xxl"}, "architecture"),
    ({"options": {"temperature": 3}}, "options"),
])
def test_bad_round_settings_are_refused_with_the_field_named(change, field):
    with pytest.raises(ValidationError) as error:
        labelling_round_create(**{**SETTINGS, **change})

    assert field in error.value.message_dict


def test_only_one_round_is_open_at_a_time():
    LabellingRoundFactory(number=1)

    with pytest.raises(ValidationError, match="Round 1 is still open"):
        labelling_round_create(**SETTINGS)


def test_the_setting_reads_as_words():
    round = LabellingRoundFactory.build(strategy_mix={"entropy": 0.8, "random": 0.2}, random_share=0.1,
                                        objectives=["exclusive", "rule"], architecture="")

    assert labelling_round_setting(round) == "entropy 80 % + random 20 % · exclusive+rule · +10 % random"


def test_the_pool_is_unlabelled_dev_products_not_queued_in_an_open_round(make_user):
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    free, labelled, undone = _dev_products(3)
    ProductFactory(split=Split.TEST)
    labeller = make_user("lab")
    label_create(product=labelled, category=shirts, user=labeller)
    label_create(product=undone, category=shirts, user=labeller)
    Label.objects.filter(product=undone).update(undone=True)
    _, queued = labelling_round_with_items(1)
    closed_round, closed_items = labelling_round_with_items(1, round_kwargs={"status": RoundStatus.CLOSED})

    assert labelling_pool_ids() == sorted([free.pk, undone.pk, closed_items[0].product_id])


def test_a_cold_start_fills_the_whole_batch_at_random(make_user):
    products = _dev_products(30)
    round = LabellingRoundFactory(strategy_mix={"entropy": 1.0}, batch_size=12)

    written = labelling_round_fill(round_id=round.pk)

    items = list(QueueItem.objects.filter(round=round).order_by("position"))
    assert written == len(items) == 12
    assert [item.position for item in items] == list(range(12))
    assert {item.strategy for item in items} == {"random"} and all(item.score is None for item in items)
    assert len({item.product_id for item in items}) == 12 and {i.product_id for i in items} <= {p.pk for p in products}
    round.refresh_from_db()
    assert round.model_version is None and round.options["fill"] == {"cold_start": True, "pool": 30, "items": 12}


def test_filling_is_idempotent_and_leaves_closed_rounds_alone():
    _dev_products(10)
    round = LabellingRoundFactory(batch_size=4)
    closed = LabellingRoundFactory(batch_size=4, status=RoundStatus.CLOSED)

    assert labelling_round_fill(round_id=round.pk) == 4
    assert labelling_round_fill(round_id=round.pk) == 0
    assert labelling_round_fill(round_id=closed.pk) == 0
    assert QueueItem.objects.count() == 4


def test_a_batch_larger_than_the_pool_takes_the_whole_pool_and_an_empty_pool_says_so(make_user):
    _dev_products(3)
    round = LabellingRoundFactory(batch_size=50)

    assert labelling_round_fill(round_id=round.pk) == 3
    LabellingRound.objects.filter(pk=round.pk).update(status=RoundStatus.CLOSED)
    labeller = make_user("lab")
    for item in QueueItem.objects.filter(round=round):
        label_create(product=item.product, category=None, user=labeller)
    later = LabellingRoundFactory(batch_size=5, status=RoundStatus.OPEN, number=round.number + 1)
    assert labelling_round_fill(round_id=later.pk) == 0
    later.refresh_from_db()
    assert "No unlabelled dev products" in later.error


def _fake_pool_scores(n_classes: int = 4, members: bool = True):
    """A stand-in for the TensorFlow scorer, for the fill's own logic (the real one runs in the test below)."""
    from classifier.services.scoring import PoolScores

    def pool_scores(*, model_version, product_ids, with_embeddings, committee_size=0):
        rng = np.random.default_rng(0)
        n = len(product_ids)
        proba = rng.dirichlet(np.ones(n_classes), size=n).astype(np.float32)
        committee = rng.dirichlet(np.ones(n_classes), size=(3, n)).astype(np.float32) if members and committee_size \
            else None
        embeddings = rng.normal(size=(n, 8)).astype(np.float32) if with_embeddings else None
        return PoolScores(product_ids=np.asarray(product_ids, np.int64), proba=proba, classes=list(range(n_classes)),
                          embeddings=embeddings, members=committee,
                          ancestors={i: [100, 200 + i % 2, i] for i in range(n_classes)})

    return pool_scores


def test_with_a_model_the_mix_and_the_random_share_split_the_batch_and_interleave():
    _dev_products(60)
    version = ModelVersionFactory(is_active=True)
    round = LabellingRoundFactory(strategy_mix={"margin": 0.5, "density": 0.5}, random_share=0.2, batch_size=20)

    with mock.patch("labelapp.workflow.services.filling.pool_scores", _fake_pool_scores()):
        assert labelling_round_fill(round_id=round.pk) == 20

    items = list(QueueItem.objects.filter(round=round).order_by("position"))
    assert Counter(item.strategy for item in items) == {"random": 4, "margin": 8, "density": 8}
    assert all(item.score is not None for item in items if item.strategy != "random")
    # Interleaved: the first half of the queue already holds each strategy's half.
    assert Counter(item.strategy for item in items[:10]) == {"random": 2, "margin": 4, "density": 4}
    margin = [item.score for item in items if item.strategy == "margin"]
    assert margin == sorted(margin, reverse=True)
    round.refresh_from_db()
    assert round.model_version == version


def test_query_by_committee_falls_back_to_entropy_until_a_committee_exists():
    _dev_products(20)
    ModelVersionFactory(is_active=True)
    round = LabellingRoundFactory(strategy_mix={"qbc_vote": 1.0}, batch_size=5)

    with mock.patch("labelapp.workflow.services.filling.pool_scores", _fake_pool_scores(members=False)):
        labelling_round_fill(round_id=round.pk)

    assert set(QueueItem.objects.values_list("strategy", flat=True)) == {"entropy"}
    round.refresh_from_db()
    assert round.options["fill"]["substituted"] == {"qbc_vote": "entropy"}


def test_closing_releases_leases_creates_the_train_run_and_sends_the_chain_after_commit(
        make_user, django_capture_on_commit_callbacks):
    round, items = labelling_round_with_items(
        3, round_kwargs={"strategy_mix": {"random": 1.0}, "objectives": ["exclusive", "rule"],
                         "options": {"training": {"epochs": 3}}})
    reviewer = make_user("rev")
    queue_items_lease(user=make_user("ann"), round=round, count=1)

    with mock.patch("labelapp.workflow.services.rounds.labelling_round_retrain_send") as send:
        with django_capture_on_commit_callbacks(execute=True):
            closed = labelling_round_close(round_id=round.pk, user=reviewer, reason="closed early by rev")
        again = labelling_round_close(round_id=round.pk, user=reviewer, reason="double click")

    assert closed.status == again.status == RoundStatus.CLOSING and again.close_reason == "closed early by rev"
    run = TrainRun.objects.get()
    assert closed.train_run == run
    assert (run.trigger, run.objectives, run.architecture, run.requested_by) == (
        "round", ["exclusive", "rule"], "logreg", reviewer)
    assert run.params == {"epochs": 3, "round": round.number, "setting": "random 100 % · exclusive+rule · logreg"}
    send.assert_called_once_with(round_id=round.pk, train_run_id=run.pk)
    assert set(QueueItem.objects.values_list("status", flat=True)) == {QueueItemStatus.PENDING}


def test_the_chain_trains_then_finishes_the_round_even_when_training_raises():
    from labelapp.workflow.services.rounds import labelling_round_retrain_chain

    train, finish = labelling_round_retrain_chain(round_id=3, train_run_id=7).tasks

    assert (train.task, train.args, train.immutable) == ("classifier.tasks.train_run_execute_task", (7,), True)
    assert (finish.task, finish.kwargs, finish.immutable) == (
        "labelapp.workflow.tasks.labelling_round_after_training_task", {"round_id": 3}, True)
    [on_error] = train.options["link_error"]
    assert (on_error["task"], on_error["kwargs"], on_error["immutable"]) == (finish.task, {"round_id": 3}, True)


def test_settings_the_training_refuses_fail_the_round():
    round, _ = labelling_round_with_items(1, round_kwargs={"objectives": ["exclusive"]})
    LabellingRound.objects.filter(pk=round.pk).update(architecture="bogus")

    closed = labelling_round_close(round_id=round.pk, reason="test")

    assert closed.status == RoundStatus.FAILED and "Retraining was refused" in closed.error
    assert not TrainRun.objects.exists()


def _closing_round(*, run_status: str, error: str = "", **kwargs) -> LabellingRound:
    run = TrainRunFactory(status=run_status, error=error)
    round, _ = labelling_round_with_items(2, round_kwargs={"status": RoundStatus.CLOSING, "train_run": run,
                                                           "strategy_mix": {"margin": 1.0}, "batch_size": 7,
                                                           "random_share": 0.1, "objectives": ["exclusive", "rule"],
                                                           "options": {"diversity": 0.1, "fill": {"pool": 9}},
                                                           **kwargs})
    return round


def test_after_a_successful_run_the_round_closes_and_the_next_opens_with_the_same_settings(
        make_user, sent_tasks, django_capture_on_commit_callbacks):
    reviewer = make_user("rev")
    round = _closing_round(run_status="succeeded", created_by=reviewer)

    with django_capture_on_commit_callbacks(execute=True):
        finished = labelling_round_after_training(round_id=round.pk)
    labelling_round_after_training(round_id=round.pk)  # a duplicate delivery does nothing

    assert finished.status == RoundStatus.CLOSED and finished.closed_at is not None
    following = LabellingRound.objects.get(status=RoundStatus.OPEN)
    assert (following.number, following.previous, following.created_by) == (round.number + 1, round, reviewer)
    assert (following.strategy_mix, following.batch_size, following.random_share, following.objectives,
            following.options) == ({"margin": 1.0}, 7, 0.1, ["exclusive", "rule"], {"diversity": 0.1})
    assert sent_tasks == [("labelapp.workflow.tasks.labelling_round_fill_task", {"round_id": following.pk})]


def test_a_failed_run_fails_the_round_with_its_error_and_labelling_goes_on():
    round = _closing_round(run_status="failed", error="TrainingDataError: no labels\n\ntraceback…")

    finished = labelling_round_after_training(round_id=round.pk)

    assert finished.status == RoundStatus.FAILED and finished.error == "Retraining failed: TrainingDataError: no labels"
    assert LabellingRound.objects.filter(status=RoundStatus.OPEN, previous=round).exists()


def test_a_round_without_auto_continue_opens_no_next_round_and_an_unfinished_run_waits():
    stopped = _closing_round(run_status="succeeded", auto_continue=False)
    waiting = _closing_round(run_status="running")

    assert labelling_round_after_training(round_id=stopped.pk).status == RoundStatus.CLOSED
    assert labelling_round_after_training(round_id=waiting.pk).status == RoundStatus.CLOSING
    assert not LabellingRound.objects.filter(status=RoundStatus.OPEN).exists()


def test_the_reaper_finishes_rounds_whose_chain_stopped_short():
    stuck = _closing_round(run_status="failed", error="worker lost", auto_continue=False)
    running = _closing_round(run_status="running")

    assert labelling_rounds_reap() == 1
    stuck.refresh_from_db()
    running.refresh_from_db()
    assert (stuck.status, running.status) == (RoundStatus.FAILED, RoundStatus.CLOSING)
