"""The outbox: a service's request for a task is committed with its data and survives a broker that is away."""
from __future__ import annotations

import pytest
from celery import chain, current_app, signature
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError

from labelapp.common import dispatch
from labelapp.common.dispatch import canvas_send, outbox_relay, task_send
from labelapp.common.models import OutboxMessage
from labelapp.common.tasks import outbox_relay_task

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_request_is_sent_after_commit_and_never_when_the_transaction_rolls_back(sent_tasks):
    with pytest.raises(RuntimeError), transaction.atomic():
        task_send("labelapp.catalogue.tasks.rules_apply_task", product_ids=[1])
        raise RuntimeError("the request failed")
    assert sent_tasks == [] and not OutboxMessage.objects.exists()

    with transaction.atomic():
        task_send("labelapp.catalogue.tasks.rules_apply_task", product_ids=[2])
        assert sent_tasks == []  # not before commit
    assert sent_tasks == [("labelapp.catalogue.tasks.rules_apply_task", {"product_ids": [2]})]
    assert not OutboxMessage.objects.exists()  # sent: nothing waits


def test_with_the_broker_away_the_request_succeeds_and_the_relay_sends_it_when_it_is_back(monkeypatch):
    attempts, sent = [], []

    def broker_down(message):
        attempts.append(message.task)
        raise BrokerError("Error 111 connecting to 127.0.0.1:63799. Connection refused.")

    monkeypatch.setattr(dispatch, "_publish", broker_down)
    with transaction.atomic():
        task_send("classifier.tasks.train_run_execute_task", train_run_id=7)
    with transaction.atomic():
        task_send("labelapp.workflow.tasks.labelling_round_close_task", round_id=3, reason="every item labelled")

    # One failed attempt, then this process stops trying at once (a request costs nothing while it is away).
    assert attempts == ["classifier.tasks.train_run_execute_task"]
    waiting = list(OutboxMessage.objects.order_by("id"))
    assert [(m.task, m.attempts) for m in waiting] == [("classifier.tasks.train_run_execute_task", 1),
                                                       ("labelapp.workflow.tasks.labelling_round_close_task", 0)]
    assert "Connection refused" in waiting[0].last_error and waiting[0].next_attempt_at > waiting[0].created_at

    monkeypatch.setattr(dispatch, "_publish", lambda message: sent.append((message.task, message.kwargs)))
    OutboxMessage.objects.update(next_attempt_at=waiting[0].created_at)  # the back-off has passed
    assert outbox_relay() == 2  # what beat's relay runs once the broker answers again
    assert sent == [("classifier.tasks.train_run_execute_task", {"train_run_id": 7}),
                    ("labelapp.workflow.tasks.labelling_round_close_task", {"round_id": 3,
                                                                            "reason": "every item labelled"})]
    assert not OutboxMessage.objects.exists()


def test_a_chain_travels_through_the_outbox_whole(sent_tasks):
    first = signature("classifier.tasks.train_run_execute_task", args=(5,), immutable=True)
    then = signature("labelapp.workflow.tasks.labelling_round_after_training_task", kwargs={"round_id": 2},
                     immutable=True)

    with transaction.atomic():
        canvas_send(chain(first.on_error(then.clone()), then))

    [(task, canvas)] = sent_tasks
    rebuilt = current_app.signature(canvas)
    assert [step.task for step in rebuilt.tasks] == ["classifier.tasks.train_run_execute_task",
                                                     "labelapp.workflow.tasks.labelling_round_after_training_task"]
    assert rebuilt.tasks[0].options["link_error"][0]["kwargs"] == {"round_id": 2}


def test_every_task_a_service_names_exists():
    import ast
    from pathlib import Path

    current_app.loader.import_default_modules()
    registered = set(current_app.tasks)
    named = set()
    root = Path(__file__).resolve().parents[2]
    for path in [p for package in ("labelapp", "classifier", "similarity") for p in (root / package).rglob("*.py")
                 if "services" in p.parts]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("task_send", "signature")
                    and node.args and isinstance(node.args[0], ast.Constant)):
                named.add(node.args[0].value)
    assert named and named <= registered, named - registered
    assert outbox_relay_task.name in registered
