"""Queueing embedding jobs (from the web, the shell and imports) and reaping the ones whose worker died.

The jobs themselves run in `similarity.services.embeddings` on the ml worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from labelapp.common.dispatch import task_send
from similarity.models import EmbeddingJob, EmbeddingKind, JobStatus
from similarity.selectors.settings import similarity_settings, text_model_version_active


def embedding_job_start(*, product_ids: Iterable[int] | None = None, model_version: str | None = None,
                        force: bool = False, kind: str = EmbeddingKind.IMAGE, user=None, enqueue: bool = True,
                        coalesce: bool = False) -> EmbeddingJob:
    """Queue a job embedding the products' new or changed images (kind=image) or titles (kind=text).

    `product_ids=None` means every product. `model_version` defaults to SIMILARITY_MODEL_VERSION for images
    and to the active text model for text ("" for text fits a new text model). With `coalesce`, ids are added to
    a job of the same kind and version that is still queued, if there is one (so an import calling this per
    batch queues one job, not hundreds). The task is sent when the caller's transaction commits.
    """
    if kind == EmbeddingKind.IMAGE:
        version = model_version or similarity_settings().model_version
    else:
        version = text_model_version_active() if model_version is None else model_version
    ids = sorted(set(product_ids)) if product_ids is not None else None
    with transaction.atomic():
        if coalesce and ids is not None:
            waiting = (EmbeddingJob.objects.select_for_update(skip_locked=True)
                       .filter(status=JobStatus.QUEUED, kind=kind, model_version=version, force=force,
                               product_ids__isnull=False).order_by("-id").first())
            if waiting is not None:
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"UPDATE {EmbeddingJob._meta.db_table} SET product_ids = product_ids || %s::bigint[] "
                        "WHERE id = %s AND status = %s",
                        [ids, waiting.id, JobStatus.QUEUED],
                    )
                    if cursor.rowcount:
                        waiting.refresh_from_db()
                        return waiting
        job = EmbeddingJob(kind=kind, model_version=version, product_ids=ids, force=force, created_by=user)
        job.full_clean()
        job.save()
        if enqueue:
            task_send("similarity.tasks.embedding_job_execute_task", job_id=job.id)
    return job



def embedding_jobs_reap(*, stale_after: timedelta = timedelta(minutes=15)) -> int:
    """Fail running jobs whose worker stopped sending heartbeats (it died); return how many."""
    cutoff = timezone.now() - stale_after
    return EmbeddingJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).update(
        status=JobStatus.FAILED, finished_at=timezone.now(),
        error=f"no heartbeat for {stale_after}: the worker running it stopped; start a new job to finish the work",
    )


def embeddings_refresh_after_import(*, product_ids: Iterable[int]) -> None:
    """After an import (the PRODUCTS_IMPORTED event): queue embedding of the products' new or changed images and
    titles. The jobs' tasks are sent when the caller's transaction commits; queued jobs coalesce.
    """
    ids = sorted(set(product_ids))
    if not ids:
        return
    embedding_job_start(product_ids=ids, coalesce=True)
    text_version = text_model_version_active()
    if text_version:
        embedding_job_start(product_ids=ids, kind=EmbeddingKind.TEXT, model_version=text_version, coalesce=True)
