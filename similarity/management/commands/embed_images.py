"""Embed the catalogue's new and changed product photos now, in this process (the job a worker would run)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from labelapp.catalogue.models import Product
from similarity.models import EmbeddingJob, JobStatus
from similarity.services.embeddings import UnknownModelVersion, embedding_job_execute, image_embedder_get
from similarity.services.jobs import embedding_job_start


class Command(BaseCommand):
    help = ("Embed product photos that are new or changed since their last embedding (all with --force) with the "
            "active model version, synchronously, chunk by chunk; prints counts and throughput.")

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Re-embed unchanged photos too.")
        parser.add_argument("--limit", type=int, default=None,
                            help="Only the first N products with a photo (by id).")
        parser.add_argument("--batch-size", type=int, default=None, help="Images per forward pass "
                            "(SIMILARITY_EMBED_BATCH_SIZE, 64).")
        parser.add_argument("--workers", type=int, default=None, help="Decoding threads (SIMILARITY_EMBED_WORKERS).")
        parser.add_argument("--model-version", default=None, help="Defaults to SIMILARITY_MODEL_VERSION.")

    def handle(self, *args, force: bool, limit: int | None, batch_size: int | None, workers: int | None,
               model_version: str | None, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        if batch_size is not None and batch_size < 1 or workers is not None and workers < 1:
            raise CommandError("--batch-size and --workers must be at least 1")
        product_ids = None
        if limit is not None:
            product_ids = list(Product.objects.exclude(image="").order_by("id").values_list("id", flat=True)[:limit])
        job = embedding_job_start(product_ids=product_ids, model_version=model_version, force=force, enqueue=False)
        try:
            started = time.perf_counter()
            # Built before the progress bar starts, so the bar's rate is the embedding rate.
            image_embedder_get(model_version=job.model_version, batch_size=batch_size, workers=workers)
            self.stdout.write(f"Model {job.model_version} ready in {time.perf_counter() - started:.1f}s")
        except UnknownModelVersion as exc:
            EmbeddingJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error=str(exc))
            raise CommandError(str(exc)) from None
        with tqdm(unit="img", desc="embed", disable=options["verbosity"] < 1) as bar:
            def progress(current: EmbeddingJob) -> None:
                bar.total = current.total
                bar.update(current.processed - bar.n)
                bar.set_postfix(embedded=current.done, unchanged=current.skipped, failed=current.failed)

            job = embedding_job_execute(job_id=job.id, progress=progress, batch_size=batch_size, workers=workers)
        rate = job.timings.get("embedded_per_s", 0.0)
        summary = (f"Job {job.id} {job.status}: {job.done} embedded, {job.skipped} unchanged, {job.failed} failed "
                   f"of {job.total} products with a photo; {rate:.1f} images/s "
                   f"(embed {job.timings.get('embed_s', 0):.1f}s, write {job.timings.get('write_s', 0):.1f}s, "
                   f"total {job.timings.get('total_s', 0):.1f}s).")
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"{summary} Error: {job.error}")
        self.stdout.write(self.style.SUCCESS(summary))
        if job.failed:
            self.stdout.write(self.style.WARNING(
                f"{job.failed} photos could not be embedded; their reasons are in the admin (Embedding failures)."))
