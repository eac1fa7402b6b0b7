"""Celery entry points of the similarity app: thin, idempotent, ids in; each calls one service.

All of them are routed to the `ml` queue (CELERY_TASK_ROUTES), so a web-facing worker never loads TensorFlow.
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def embedding_job_execute_task(job_id: int) -> str:
    """Run an embedding job; a duplicate delivery finds the job claimed and does nothing. Return its status."""
    from similarity.services.embeddings import embedding_job_execute

    return embedding_job_execute(job_id=job_id).status


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def embeddings_sync_categories_task(product_ids: list[int] | None = None) -> int:
    """Copy the products' level-2/level-3 categories onto their vectors; return rows changed."""
    from similarity.services.embeddings import embeddings_sync_categories

    return embeddings_sync_categories(product_ids=product_ids)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def neighbour_cache_build_task(scope: str = "level2", product_ids: list[int] | None = None, k: int = 100) -> int:
    """Precompute top-k image neighbours per product in a scope; return rows written."""
    from similarity.services.neighbours import neighbour_cache_build

    return neighbour_cache_build(scope=scope, product_ids=product_ids, k=k)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def embedding_jobs_reap_task() -> int:
    """Fail running embedding jobs whose worker died (periodic); return how many."""
    from similarity.services.embeddings import embedding_jobs_reap

    return embedding_jobs_reap()
