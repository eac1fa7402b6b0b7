"""Writing image vectors: running embedding jobs, their chunks, pruning old versions.

    job = embedding_job_start(product_ids=[...])      # similarity.services.jobs: queued, sent on commit
    embedding_job_execute(job_id=job.id)              # what the task (or `manage.py embed_images`) runs

Worker-only: it builds the image embedder (TensorFlow) on first use, so nothing the web process imports may
import it (import-linter); queueing jobs and syncing category copies live in `jobs` and `category_copies`.

A job walks the products with an image in id order, in chunks of SIMILARITY_JOB_CHUNK_SIZE. Each chunk is one
transaction: its vectors, its failures, the job's counters and the space's generation bump commit together,
so a crash leaves every written chunk whole and the next job picks up exactly what is missing. A product is
re-embedded only when its image file changed (fingerprint = size and modification time of the file, or the
SHA-1 of its bytes on a storage without local paths), unless `force`; a new model version has no rows yet, so
switching backbones re-embeds everything into new rows beside the old ones.

Throughput: decoding overlaps inference inside the embedder, and each chunk is committed on a writer thread while
the next chunk is embedded, so the database's work (HNSW inserts) stays off the critical path; vectors travel as
5-significant-digit text, which gives back every float16 exactly (bench/bench_embedding_throughput.py).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from labelapp.catalogue.models import Product
from similarity.core.backbones import BACKBONES
from similarity.core.embedder import EmbeddingResult, ImageEmbedder
from similarity.models import (
    EmbeddingFailure,
    EmbeddingJob,
    EmbeddingKind,
    EmbeddingSpace,
    ImageEmbedding,
    JobStatus,
    NeighbourCache,
)
from similarity.selectors.settings import similarity_settings
from similarity.services.job_chunks import JobProgress, halfvec_texts, job_product_chunks, job_product_ids
from similarity.services.spaces import embedding_space_ensure, embedding_spaces_bump
from similarity.services.text import text_job_run

logger = logging.getLogger(__name__)


class UnknownModelVersion(ValueError):
    """No backbone of similarity.core produces this model version."""


# --------------------------------------------------------------------------------------------------------------
# Embedders (built once per process: building one costs seconds, and TensorFlow stays out of the web process)

_EMBEDDERS: dict[tuple[str, int, int, int], object] = {}
_EMBEDDERS_LOCK = threading.Lock()


def image_embedder_get(*, model_version: str, batch_size: int | None = None, workers: int | None = None):
    """Return the process's ImageEmbedder for a model version, building it on first use."""
    backbone = next((name for name, config in BACKBONES.items() if config.model_version == model_version), None)
    if backbone is None:
        known = ", ".join(config.model_version for config in BACKBONES.values())
        raise UnknownModelVersion(f"no backbone produces model version {model_version!r} (known: {known})")
    config = similarity_settings()
    key = (backbone, batch_size or config.embed_batch_size, workers or config.embed_workers, config.jpeg_max_pixels)
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = ImageEmbedder(backbone=backbone, batch_size=key[1], workers=key[2],
                                            jpeg_max_pixels=key[3])
        return _EMBEDDERS[key]


def embedding_job_execute(*, job_id: int, progress: JobProgress | None = None, batch_size: int | None = None,
                          workers: int | None = None) -> EmbeddingJob:
    """Run a queued job to its end; a second call (a duplicate task delivery) finds it claimed and returns.

    `batch_size` / `workers` override SIMILARITY_EMBED_BATCH_SIZE / SIMILARITY_EMBED_WORKERS for image jobs.
    Never raises for a bad image (it is recorded as an EmbeddingFailure); any other error fails the job with
    its message, keeping the chunks already committed.
    """
    now = timezone.now()
    claimed = EmbeddingJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    job = EmbeddingJob.objects.get(pk=job_id)
    if not claimed:
        logger.info("embedding job %s is %s; nothing to do", job_id, job.status)
        return job
    try:
        if job.kind == EmbeddingKind.TEXT:
            text_job_run(job=job, progress=progress)
        else:
            _image_job_run(job=job, progress=progress, batch_size=batch_size, workers=workers)
    except Exception as exc:  # the job records why it stopped; the chunks committed so far stay
        logger.exception("embedding job %s failed", job_id)
        EmbeddingJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:5000], finished_at=timezone.now()
        )
    else:
        EmbeddingJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            status=JobStatus.SUCCEEDED, finished_at=timezone.now()
        )
    job.refresh_from_db()
    return job


def _image_source(name: str) -> tuple[object | None, str, str]:
    """Return (path or bytes to embed, fingerprint, error) for a stored image name."""
    try:
        path = default_storage.path(name)
    except NotImplementedError:  # a remote storage: read the bytes, fingerprint them
        try:
            with default_storage.open(name, "rb") as handle:
                data = handle.read()
        except Exception as exc:  # storages raise their own error types
            return None, "missing", f"missing: cannot read {name}: {exc}"
        return data, "sha1:" + hashlib.sha1(data).hexdigest(), ""
    except SuspiciousFileOperation as exc:
        return None, "suspicious", f"missing: {exc}"
    try:
        stat = os.stat(path)
    except OSError:
        return None, "missing", f"missing: no such file: {name}"
    return path, f"{stat.st_size}:{stat.st_mtime_ns}", ""


class _ChunkWriter:
    """Commit chunks on a thread of their own, so chunk i is written while chunk i+1 is embedded.

    At most one chunk waits (bounded memory); chunks commit in order; a write error surfaces at the next
    submit() or at close(). Inside a caller's transaction (tests, or a service calling this in atomic) the other
    thread could not see the caller's uncommitted rows, so writes then happen inline.
    """

    def __init__(self) -> None:
        inline = connection.in_atomic_block
        self.pool = None if inline else ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-write")
        self.pending: Future | None = None
        self.seconds = 0.0

    def _timed(self, write: Callable[[], None]) -> None:
        tick = time.perf_counter()
        write()
        self.seconds += time.perf_counter() - tick

    def submit(self, write: Callable[[], None]) -> None:
        if self.pool is None:
            self._timed(write)
            return
        self.wait()
        self.pending = self.pool.submit(self._timed, write)

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def close(self) -> None:
        """Wait for the last chunk and end the thread (closing its database connection); idempotent."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        try:
            self.wait()
        finally:
            pool.submit(lambda: connection.close()).result()  # resolved in that thread: its own connection
            pool.shutdown()


def _image_job_run(*, job: EmbeddingJob, progress: JobProgress | None, batch_size: int | None,
                   workers: int | None) -> None:
    config = similarity_settings()
    embedder = image_embedder_get(model_version=job.model_version, batch_size=batch_size, workers=workers)
    embedding_space_ensure(model_version=job.model_version, kind=EmbeddingKind.IMAGE, dim=embedder.dim)
    with_image = Product.objects.exclude(image="")
    in_scope = with_image.filter(id__in=job_product_ids(job=job)) if job.product_ids is not None else with_image
    EmbeddingJob.objects.filter(pk=job.pk).update(total=in_scope.count())
    _image_embeddings_drop_imageless(job=job)
    timings: dict[str, float] = defaultdict(float)
    started = time.perf_counter()
    writer = _ChunkWriter()
    chunks = job_product_chunks(job=job, products=with_image, fields=("id", "image", "level2_id", "level3_id"),
                                chunk_size=config.job_chunk_size)
    try:
        while True:
            tick = time.perf_counter()
            chunk = next(chunks, None)
            if chunk is None:
                break
            todo, sources, failures, counts = _image_chunk_plan(job=job, chunk=chunk)
            timings["scan_s"] += time.perf_counter() - tick

            tick = time.perf_counter()
            result = embedder.embed_paths(sources) if sources else None
            timings["embed_s"] += time.perf_counter() - tick

            rows = _image_chunk_rows(job=job, todo=todo, result=result, failures=failures)
            counts = {"done": len(rows), "skipped": counts["skipped"],
                      "failed": counts["still_failing"] + len(failures)}
            writer.submit(functools.partial(image_embeddings_write, job=job, rows=rows, failures=failures,
                                            counts=counts))
            if progress:
                job.refresh_from_db()
                progress(job)
        tick = time.perf_counter()
        writer.close()
        timings["write_wait_s"] += time.perf_counter() - tick
    finally:
        writer.close()
    timings["write_s"] = writer.seconds
    total_s = time.perf_counter() - started
    job.refresh_from_db(fields=["done"])
    timings = {name: round(value, 3) for name, value in timings.items()}
    timings["total_s"] = round(total_s, 3)
    timings["embedded_per_s"] = round(job.done / total_s, 2) if total_s > 0 else 0.0
    EmbeddingJob.objects.filter(pk=job.pk).update(timings=timings)
    if progress:
        job.refresh_from_db()
        progress(job)


def _image_chunk_rows(*, job: EmbeddingJob, todo: list[tuple[dict, str]], result: EmbeddingResult | None,
                      failures: dict[int, tuple[str, str]]) -> list[ImageEmbedding]:
    """Return the chunk's vectors as rows, adding the images the embedder could not load to `failures`."""
    if result is None:
        return []
    rows = []
    texts = halfvec_texts(result.vectors)
    for index, (row, fingerprint) in enumerate(todo):
        if index in result.errors:
            failures[row["id"]] = (fingerprint, result.errors[index])
        else:
            rows.append(ImageEmbedding(product_id=row["id"], model_version=job.model_version,
                                       embedding=texts[index], fingerprint=fingerprint,
                                       level2_id=row["level2_id"], level3_id=row["level3_id"]))
    return rows


def _image_chunk_plan(*, job: EmbeddingJob, chunk: list[dict]) -> tuple[list, list, dict, dict[str, int]]:
    """Sort a chunk's products into (to embed, their sources, failures found without decoding, counts)."""
    ids = [row["id"] for row in chunk]
    existing = dict(ImageEmbedding.objects.filter(model_version=job.model_version, product_id__in=ids)
                    .values_list("product_id", "fingerprint"))
    known_bad = dict(EmbeddingFailure.objects.filter(model_version=job.model_version, product_id__in=ids)
                     .values_list("product_id", "fingerprint"))
    todo, sources, failures = [], [], {}
    counts = {"skipped": 0, "still_failing": 0}
    for row in chunk:
        source, fingerprint, error = _image_source(row["image"])
        if not job.force and existing.get(row["id"]) == fingerprint:
            counts["skipped"] += 1
        elif not job.force and known_bad.get(row["id"]) == fingerprint:
            counts["still_failing"] += 1  # the same bad file as last time: not worth decoding again
        elif error:
            failures[row["id"]] = (fingerprint, error)
        else:
            todo.append((row, fingerprint))
            sources.append(source)
    return todo, sources, failures, counts


@transaction.atomic
def image_embeddings_write(*, job: EmbeddingJob, rows: list[ImageEmbedding],
                           failures: dict[int, tuple[str, str]], counts: dict[str, int]) -> None:
    """Commit one chunk: upsert vectors, record failures, move the job's counters, bump the generation."""
    version = job.model_version
    if rows:
        ImageEmbedding.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["model_version", "product"],
            update_fields=["embedding", "fingerprint", "level2", "level3", "updated_at"],
        )
        EmbeddingFailure.objects.filter(model_version=version,
                                        product_id__in=[row.product_id for row in rows]).delete()
    if failures:
        EmbeddingFailure.objects.bulk_create(
            [EmbeddingFailure(product_id=product_id, model_version=version, fingerprint=fingerprint,
                              reason=reason[:1000], job_id=job.id)
             for product_id, (fingerprint, reason) in failures.items()],
            update_conflicts=True, unique_fields=["model_version", "product"],
            update_fields=["fingerprint", "reason", "job", "created_at"],
        )
        # The image changed and no longer loads: the old vector describes a photo that is gone.
        ImageEmbedding.objects.filter(model_version=version, product_id__in=list(failures)).delete()
    if rows or failures:
        embedding_spaces_bump(model_versions=[version])
    EmbeddingJob.objects.filter(pk=job.pk).update(
        done=F("done") + counts.get("done", 0), skipped=F("skipped") + counts.get("skipped", 0),
        failed=F("failed") + counts.get("failed", 0), heartbeat_at=timezone.now(),
    )


@transaction.atomic
def _image_embeddings_drop_imageless(*, job: EmbeddingJob) -> None:
    """Delete the job's version's vectors of products (in the job's scope) whose image was removed."""
    stale = ImageEmbedding.objects.filter(model_version=job.model_version, product__image="")
    if job.product_ids is not None:
        stale = stale.filter(product_id__in=job_product_ids(job=job))
    if stale.delete()[0]:
        embedding_spaces_bump(model_versions=[job.model_version])


# --------------------------------------------------------------------------------------------------------------
# Hooks for the rest of the product


@transaction.atomic
def image_embeddings_prune(*, keep_model_version: str) -> int:
    """Delete image vectors, failures and neighbour caches of every other model version; return rows deleted.

    Run after a backbone switch once the new version covers the catalogue: the HNSW index then holds one version.
    """
    deleted = ImageEmbedding.objects.exclude(model_version=keep_model_version).delete()[0]
    EmbeddingFailure.objects.exclude(model_version=keep_model_version).filter(
        model_version__in=EmbeddingSpace.objects.filter(kind=EmbeddingKind.IMAGE).values("model_version")
    ).delete()
    NeighbourCache.objects.exclude(model_version=keep_model_version).delete()
    EmbeddingSpace.objects.filter(kind=EmbeddingKind.IMAGE).exclude(model_version=keep_model_version).delete()
    return deleted
