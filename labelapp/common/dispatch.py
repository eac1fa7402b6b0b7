"""The one seam through which services ask for background work: a transactional outbox.

    task_send("classifier.tasks.train_run_execute_task", train_run_id=run.id)

Services never import tasks (an import-linter contract): they name the task. The request is an
`OutboxMessage` written in the caller's transaction, so it exists exactly when the data it is about was
committed — a rolled-back request asks for nothing, a committed one is never lost. After commit the message
is sent at once; if the broker does not answer, the request still succeeds and the message waits for the
relay (`outbox_relay_task`, run by beat every OUTBOX_RELAY_SECONDS), which sends it when the broker is back.
After a failed send this process stops trying to send at once for OUTBOX_BACKOFF_SECONDS, so a broker
outage costs requests nothing. Tasks are idempotent (compare-and-set on their rows), so the rare message
sent twice — a relay racing a slow commit hook — is harmless.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from labelapp.common.models import OutboxMessage

logger = logging.getLogger(__name__)

_broker_down_until = 0.0


def task_send(task: str, /, **kwargs) -> OutboxMessage:
    """Ask for `task(**kwargs)` once the caller's transaction commits (at once when there is none)."""
    message = OutboxMessage.objects.create(task=task, kwargs=kwargs)
    transaction.on_commit(lambda: outbox_deliver(ids=[message.id]))
    return message


def canvas_send(signature) -> OutboxMessage:
    """Ask for a Celery canvas (a chain, a group…) once the caller's transaction commits."""
    data = dict(signature)
    message = OutboxMessage.objects.create(task=str(data.get("task", "")), canvas=data)
    transaction.on_commit(lambda: outbox_deliver(ids=[message.id]))
    return message


def _publish(message: OutboxMessage) -> None:
    # Nobody waits for an outbox task's result, so the result backend is not touched here: subscribing to it
    # retries for about 20 s against a dead Valkey, which would hold the request that sent the message.
    if message.canvas:
        current_app.signature(message.canvas).apply_async(retry=False, ignore_result=True)
    else:
        current_app.send_task(message.task, kwargs=message.kwargs, retry=False, ignore_result=True)


def outbox_deliver(*, ids: list[int] | None = None, limit: int = 200) -> int:
    """Send due outbox messages (the given ones, or the oldest `limit`) and delete them; return how many were sent.

    Rows are locked with SKIP LOCKED, so the commit hook and the relay never send the same row at once. The
    first failure marks the broker down: that message gets a later attempt and the rest wait for the relay.
    """
    global _broker_down_until
    if ids is not None and time.monotonic() < _broker_down_until:
        return 0
    sent = 0
    with transaction.atomic():
        due = OutboxMessage.objects.select_for_update(skip_locked=True).order_by("id")
        due = due.filter(id__in=ids) if ids is not None else due.filter(next_attempt_at__lte=timezone.now())
        for message in due[:limit]:
            try:
                _publish(message)
            except Exception as error:  # noqa: BLE001 — the broker's failures come in many types; all mean "later"
                _broker_down_until = time.monotonic() + settings.OUTBOX_BACKOFF_SECONDS
                delay = min(settings.OUTBOX_RELAY_SECONDS * 2 ** min(message.attempts, 6), 3600)
                OutboxMessage.objects.filter(id=message.id).update(
                    attempts=message.attempts + 1, last_error=f"{type(error).__name__}: {error}"[:2000],
                    next_attempt_at=timezone.now() + timedelta(seconds=delay))
                logger.warning("outbox: could not send %s (%s); the relay will retry", message.task, error)
                break
            OutboxMessage.objects.filter(id=message.id).delete()
            sent += 1
    if sent and ids is None:
        logger.info("outbox: sent %s waiting message(s)", sent)
    return sent


def outbox_relay() -> int:
    """Send every due outbox message, in batches; return how many were sent."""
    global _broker_down_until
    _broker_down_until = 0.0  # the relay always tries: it runs because the broker delivered it
    total = 0
    while sent := outbox_deliver(limit=200):
        total += sent
    return total


def outbox_pending_count() -> int:
    """Return how many messages wait in the outbox."""
    return OutboxMessage.objects.count()
