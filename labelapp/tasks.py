"""Celery entry points of labelapp: thin, idempotent, ids in; each calls one service."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task
from django.db import OperationalError


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def rules_apply_task(product_ids: list[int] | None = None) -> dict[str, int]:
    """Apply the active legacy rules to the given products (all when None); return the run's counts."""
    from labelapp.services.rules import rules_apply

    return asdict(rules_apply(product_ids=product_ids))


# No autoretry: a run that failed is no longer queued, so a retry would do nothing; the reaper handles
# runs whose worker died.
@shared_task(acks_late=True)
def import_run_execute_task(import_run_id: int) -> str:
    """Execute a queued import run (products, taxonomy or rules); return its final status."""
    from labelapp.services.import_jobs import import_progress_recorder
    from labelapp.services.imports import import_run_execute

    run = import_run_execute(import_run_id=import_run_id,
                             progress=import_progress_recorder(import_run_id=import_run_id))
    if run.kind == "products" and run.status == "succeeded":
        import_run_follow_up_task.delay(import_run_id=import_run_id)
    return run.status


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def import_run_follow_up_task(import_run_id: int) -> dict[str, int]:
    """Apply the legacy rules to an import's products and refresh their embeddings."""
    from labelapp.services.import_jobs import import_run_follow_up

    return import_run_follow_up(import_run_id=import_run_id)


@shared_task
def import_runs_reap_task() -> int:
    """Fail import runs whose worker died."""
    from labelapp.services.import_jobs import import_runs_reap

    return import_runs_reap()


# The ml queue (settings.CELERY_TASK_ROUTES): with a model, filling scores the pool with TensorFlow.
@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def labelling_round_fill_task(round_id: int) -> int:
    """Fill an open round's queue from the pool; a round that already has items is left alone."""
    from labelapp.services.rounds import labelling_round_fill

    return labelling_round_fill(round_id=round_id)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def labelling_round_close_task(round_id: int, reason: str = "") -> str:
    """Close an open round and send its retraining chain; return the round's status."""
    from labelapp.services.rounds import labelling_round_close

    return labelling_round_close(round_id=round_id, reason=reason).status


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def labelling_round_after_training_task(round_id: int) -> str:
    """Finish a closing round from its train run and open the next one; return the round's status."""
    from labelapp.services.rounds import labelling_round_after_training

    return labelling_round_after_training(round_id=round_id).status


@shared_task
def labelling_rounds_reap_task() -> int:
    """Finish closing rounds whose retraining finished without the chain's last step."""
    from labelapp.services.rounds import labelling_rounds_reap

    return labelling_rounds_reap()


@shared_task
def queue_leases_expire_task() -> int:
    """Return queue items whose lease expired to the queue."""
    from labelapp.services.queue import queue_leases_expire

    return queue_leases_expire()
