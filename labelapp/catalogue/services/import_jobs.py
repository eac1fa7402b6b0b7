"""Imports submitted from the browser or the API: store the upload, queue the run, report progress, reap."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from labelapp.catalogue.models import ImportKind, ImportRun, ImportStatus, Product
from labelapp.catalogue.services.imports.execute import import_run_execute
from labelapp.catalogue.services.imports.mapping import mapping_load
from labelapp.catalogue.services.imports.runs import import_run_create
from labelapp.catalogue.services.rules import rules_apply
from labelapp.common.dispatch import task_send
from labelapp.common.events import PRODUCTS_IMPORTED, event_publish

UPLOAD_SUFFIXES = {
    ImportKind.PRODUCTS: {".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json"},
    ImportKind.TAXONOMY: {".txt", ".csv", ".tsv"},
    ImportKind.RULES: {".json", ".csv"},
}


def _upload_store(*, uploaded_file: UploadedFile) -> Path:
    """Copy an upload where every worker can read it (MEDIA_ROOT/imports/<uuid>/<name>)."""
    name = Path(uploaded_file.name or "upload").name.replace("\x00", "") or "upload"
    folder = Path(settings.MEDIA_ROOT) / "imports" / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    with target.open("wb") as out:
        for chunk in uploaded_file.chunks():
            out.write(chunk)
    return target


def import_job_submit(*, kind: str, uploaded_file: UploadedFile, user: AbstractBaseUser | None,
                      source: str = "", mapping_file: UploadedFile | None = None) -> ImportRun:
    """Store an uploaded feed, taxonomy or rules file and queue its import on the worker.

    Raises ValidationError for an unknown kind, a file type the kind cannot read, or an invalid mapping.
    """
    if kind not in ImportKind.values:
        raise ValidationError({"kind": f"unknown import kind {kind!r} (one of {', '.join(ImportKind.values)})"})
    suffix = Path(uploaded_file.name or "").suffix.lower()
    if suffix not in UPLOAD_SUFFIXES[kind]:
        allowed = ", ".join(sorted(UPLOAD_SUFFIXES[kind]))
        raise ValidationError({"file": f"a {kind} import reads {allowed} files, not {suffix or 'files without a suffix'}"})
    options: dict = {}
    if mapping_file is not None:
        if kind != ImportKind.PRODUCTS:
            raise ValidationError({"mapping": "a mapping applies to product imports only"})
        mapping_path = _upload_store(uploaded_file=mapping_file)
        try:
            options["mapping"] = mapping_load(path=mapping_path).to_dict()
        except ValueError as exc:
            raise ValidationError({"mapping": f"invalid mapping: {exc}"}) from exc
    if kind == ImportKind.PRODUCTS and not source and not options.get("mapping", {}).get("source"):
        source = Path(uploaded_file.name or "upload").stem
    path = _upload_store(uploaded_file=uploaded_file)
    run = import_run_create(kind=kind, file_name=str(path), source=source, options=options, user=user)
    task_send("labelapp.catalogue.tasks.import_run_execute_task", import_run_id=run.id)
    return run


def import_job_run(*, import_run_id: int, redelivered: bool = False) -> ImportRun:
    """Execute a queued import run with progress reports; a product import then queues its follow-up.

    `redelivered`: the broker delivers this message again because the worker that took it died mid-task (the task
    acknowledges late). A run it left "running" is queued again and imported from the start; products are
    upserted, so the rows the dead worker committed are simply written once more.
    """
    if redelivered:
        ImportRun.objects.filter(pk=import_run_id, status=ImportStatus.RUNNING).update(
            status=ImportStatus.QUEUED, started_at=None)
    run = import_run_execute(import_run_id=import_run_id,
                             progress=import_progress_recorder(import_run_id=import_run_id))
    if run.kind == ImportKind.PRODUCTS and run.status == ImportStatus.SUCCEEDED:
        task_send("labelapp.catalogue.tasks.import_run_follow_up_task", import_run_id=import_run_id)
    return run


def import_progress_recorder(*, import_run_id: int, every_s: float = 1.0) -> Callable[[int, int], None]:
    """Return a progress(bytes_done, bytes_total) callback that saves progress at most every `every_s`."""
    # -inf, not 0: time.monotonic() counts from boot, so on a fresh machine it can be below `every_s`.
    last = float("-inf")

    def record(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < every_s and done < total:
            return
        last = now
        ImportRun.objects.filter(pk=import_run_id).update(bytes_done=done, bytes_total=total)

    return record


def import_runs_reap(*, stale_after: timedelta | None = None) -> int:
    """Fail runs left 'running' past `stale_after` (their worker died); return how many were failed.

    Batches such a run committed stay (each batch is its own transaction); re-running the import is safe
    because products are upserted.
    """
    stale_after = stale_after or timedelta(seconds=settings.IMPORT_STALE_AFTER_S)
    cutoff = timezone.now() - stale_after
    return ImportRun.objects.filter(status=ImportStatus.RUNNING, started_at__lt=cutoff).update(
        status=ImportStatus.FAILED, finished_at=timezone.now(),
        error=f"no progress for {stale_after}: the worker running it stopped; import the file again to finish it",
    )


def import_run_follow_up(*, import_run_id: int) -> dict[str, int]:
    """After a product import: apply the legacy rules to the products it touched, then announce them
    (PRODUCTS_IMPORTED: the similarity app queues the embedding of their photos and titles)."""
    run = ImportRun.objects.get(pk=import_run_id)
    if run.kind != ImportKind.PRODUCTS or run.status != ImportStatus.SUCCEEDED:
        return {"products": 0}
    product_ids = list(Product.objects.filter(import_run_id=import_run_id).values_list("id", flat=True))
    result = rules_apply(product_ids=product_ids)
    event_publish(PRODUCTS_IMPORTED, product_ids=product_ids)
    return {"products": len(product_ids), "rule_labels_created": result.labels_created}
