"""Celery entry points of the similarity app: thin, idempotent, ids in; each calls one service.

Embedding jobs run on the `ml` queue (CELERY_TASK_ROUTES); the housekeeping below loads no model and runs on
the default queue.
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from similarity.services.category_copies import embeddings_categories_sync_dirty, embeddings_sync_categories
from similarity.services.jobs import embedding_jobs_reap
from similarity.services.neighbours import neighbour_cache_build


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def embedding_job_execute_task(job_id: int) -> str:
    """Run an embedding job; a duplicate delivery finds the job claimed and does nothing. Return its status."""
    from similarity.services.embeddings import embedding_job_execute  # lazy: TensorFlow, ml worker only

    return embedding_job_execute(job_id=job_id).status


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def embeddings_sync_categories_task(product_ids: list[int] | None = None) -> int:
    """Copy the products' level-2/level-3 categories onto their vectors (all when None); return rows changed."""
    return embeddings_sync_categories(product_ids=product_ids)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def embeddings_categories_sync_dirty_task() -> int:
    """Sweep: copy the categories of products marked dirty onto their vectors (periodic); return rows changed."""
    return embeddings_categories_sync_dirty()


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def neighbour_cache_build_task(scope: str = "level2", product_ids: list[int] | None = None, k: int = 100) -> int:
    """Precompute top-k image neighbours per product in a scope; return rows written."""
    return neighbour_cache_build(scope=scope, product_ids=product_ids, k=k)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def embedding_jobs_reap_task() -> int:
    """Fail running embedding jobs whose worker died (periodic); return how many."""
    return embedding_jobs_reap()
