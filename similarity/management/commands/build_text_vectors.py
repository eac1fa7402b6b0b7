"""Build the title text vectors used by modality=text and hybrid (fitting a text model when needed)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from similarity.models import EmbeddingJob, EmbeddingKind, JobStatus
from similarity.selectors.settings import text_model_version_active
from similarity.services.embeddings import embedding_job_execute
from similarity.services.jobs import embedding_job_start


class Command(BaseCommand):
    help = ("Embed product titles with the active text model (new and changed titles only), or fit a new text "
            "model on the catalogue first (--refit, or when none exists) and embed every title with it.")

    def add_arguments(self, parser):
        parser.add_argument("--refit", action="store_true", help="Fit a new text model on the current titles.")
        parser.add_argument("--force", action="store_true", help="Re-embed unchanged titles too.")

    def handle(self, *args, refit: bool, force: bool, **options):
        version = "" if refit else text_model_version_active()
        job = embedding_job_start(kind=EmbeddingKind.TEXT, model_version=version, force=force, enqueue=False)
        if not version:
            self.stdout.write("Fitting a new text model on the catalogue's titles…")
        with tqdm(unit="titles", desc="text", disable=options["verbosity"] < 1) as bar:
            def progress(current: EmbeddingJob) -> None:
                bar.total = current.total
                bar.update(current.processed - bar.n)

            job = embedding_job_execute(job_id=job.id, progress=progress)
        summary = (f"Text job {job.id} {job.status} ({job.model_version}): {job.done} embedded, {job.skipped} "
                   f"unchanged, {job.failed} without a known word, of {job.total}.")
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"{summary} Error: {job.error}")
        self.stdout.write(self.style.SUCCESS(summary))
