"""Celery entry points of the catalogue: thin, idempotent, ids in; each calls one service."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task
from django.db import OperationalError

from labelapp.catalogue.services.import_jobs import import_job_run, import_run_follow_up, import_runs_reap
from labelapp.catalogue.services.rules import rules_apply
from labelapp.catalogue.services.trust import trust_and_categories_refresh


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def rules_apply_task(product_ids: list[int] | None = None) -> dict[str, int]:
    """Apply the active legacy rules to the given products (all when None); return the run's counts."""
    return asdict(rules_apply(product_ids=product_ids))


# No autoretry: a run that failed is no longer queued, so a retry would do nothing; the reaper handles
# runs whose worker died.
@shared_task(bind=True, acks_late=True)
def import_run_execute_task(self, import_run_id: int) -> str:
    """Execute a queued import run (products, taxonomy or rules); return its final status."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    return import_job_run(import_run_id=import_run_id, redelivered=redelivered).status


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def import_run_follow_up_task(import_run_id: int) -> dict[str, int]:
    """Apply the legacy rules to an import's products and announce them (embeddings follow)."""
    return import_run_follow_up(import_run_id=import_run_id)


@shared_task
def import_runs_reap_task() -> int:
    """Fail import runs whose worker died."""
    return import_runs_reap()


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def trust_refresh_task() -> dict:
    """Re-measure every source of categories on the labels and re-decide the catalogue (periodic)."""
    return asdict(trust_and_categories_refresh())
