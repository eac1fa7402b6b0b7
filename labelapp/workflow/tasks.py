"""Celery entry points of the labelling workflow: thin, idempotent, ids in; each calls one service."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from labelapp.workflow.services.queue import queue_leases_expire
from labelapp.workflow.services.rounds import (
    labelling_round_after_training,
    labelling_round_close,
    labelling_rounds_close_complete,
    labelling_rounds_reap,
)


# The ml queue (settings.CELERY_TASK_ROUTES): with a model, filling scores the pool with TensorFlow.
@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def labelling_round_fill_task(round_id: int) -> int:
    """Fill an open round's queue from the pool; a round that already has items is left alone."""
    # Worker-only and TensorFlow-heavy: imported here so that the web process, which imports this module to
    # name tasks, never loads it.
    from labelapp.workflow.services.filling import labelling_round_fill  # lazy: TensorFlow, ml worker only

    return labelling_round_fill(round_id=round_id)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def labelling_round_close_task(round_id: int, reason: str = "") -> str:
    """Close an open round and send its retraining chain; return the round's status."""
    return labelling_round_close(round_id=round_id, reason=reason).status


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def labelling_round_after_training_task(round_id: int) -> str:
    """Finish a closing round from its train run and open the next one; return the round's status."""
    return labelling_round_after_training(round_id=round_id).status


@shared_task
def labelling_rounds_reap_task() -> dict[str, int]:
    """Close open rounds whose items are all done; finish closing rounds whose retraining finished."""
    return {"closed": labelling_rounds_close_complete(), "finished": labelling_rounds_reap()}


@shared_task
def queue_leases_expire_task() -> int:
    """Return queue items whose lease expired to the queue."""
    return queue_leases_expire()
