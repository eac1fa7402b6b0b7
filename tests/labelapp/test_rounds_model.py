"""Filling a round with a real trained model: the pool is scored by TensorFlow and the mix draws the batch."""
from __future__ import annotations

from collections import Counter

import pytest

from classifier.services.pipeline import train_run_execute
from classifier.services.runs import train_run_create
from labelapp.catalogue.models import Label
from labelapp.workflow.models import QueueItem
from labelapp.workflow.services.filling import labelling_round_fill
from labelapp.workflow.services.rounds import labelling_pool_ids, labelling_round_create
from tests.classifier.conftest import FAST, catalogue  # noqa: F401 — the fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_round_is_filled_from_the_scores_of_the_active_model(catalogue):  # noqa: F811
    run = train_run_execute(train_run_id=train_run_create(architecture="logreg", objectives=["exclusive"],
                                                          params=dict(FAST), schedule=False).id)
    assert run.status == "succeeded", run.error
    pool = set(labelling_pool_ids())
    # The fill task goes to the outbox (this test consumes no queue); the round is filled below, in this process.
    round = labelling_round_create(strategy_mix={"entropy": 0.5, "tree_entropy": 0.5}, random_share=0.25,
                                   batch_size=16, objectives=["exclusive"], options={"seed": 1})

    assert labelling_round_fill(round_id=round.pk) == 16

    items = list(QueueItem.objects.filter(round=round).select_related("product").order_by("position"))
    assert Counter(item.strategy for item in items) == {"random": 4, "entropy": 6, "tree_entropy": 6}
    assert {item.product_id for item in items} <= pool
    assert not Label.objects.filter(product__in=[item.product_id for item in items]).exists()
    entropy = sorted((item for item in items if item.strategy == "entropy"), key=lambda item: item.position)
    assert [item.score for item in entropy] == sorted((item.score for item in entropy), reverse=True)
    assert all(item.score > 0 for item in entropy)
    assert all(item.score is None for item in items if item.strategy == "random")
    round.refresh_from_db()
    assert round.model_version == run.model_version and round.options["fill"]["cold_start"] is False
