"""Execute a queued ImportRun of any kind: products, taxonomy or rules."""

from __future__ import annotations

from pathlib import Path

from labelapp.catalogue.models import ImportKind, ImportRun
from labelapp.catalogue.services.imports.files import ProgressCallback
from labelapp.catalogue.services.imports.mapping import ImportMapping
from labelapp.catalogue.services.imports.products import products_import
from labelapp.catalogue.services.imports.runs import import_run_fail, import_run_start
from labelapp.catalogue.services.rules import rules_import
from labelapp.catalogue.services.taxonomy import taxonomy_import


def import_run_execute(*, import_run_id: int, progress: ProgressCallback | None = None) -> ImportRun:
    """Execute a queued ImportRun from its stored options (the entry point for a Celery task)."""
    run = ImportRun.objects.get(pk=import_run_id)
    options = run.options or {}
    if run.kind == ImportKind.PRODUCTS:
        try:
            mapping = ImportMapping.from_dict(options["mapping"]) if options.get("mapping") else None
        except ValueError as exc:
            if import_run_start(import_run=run):
                import_run_fail(import_run=run, error=f"invalid mapping: {exc}")
            return run
        return products_import(
            import_run=run,
            path=Path(run.file_name),
            mapping=mapping,
            images_dir=Path(options["images_dir"]) if options.get("images_dir") else None,
            file_format=options.get("format"),
            batch_size=options.get("batch_size"),
            fetch_image_urls=options.get("fetch_image_urls", True),
            progress=progress,
        )
    if run.kind == ImportKind.TAXONOMY:
        return taxonomy_import(
            import_run=run,
            path=Path(run.file_name),
            file_format=options.get("format"),
            exclusive_path=Path(options["exclusive_file"]) if options.get("exclusive_file") else None,
            progress=progress,
        )
    if run.kind == ImportKind.RULES:
        return rules_import(import_run=run, path=Path(run.file_name))
    raise ValueError(f"import kind {run.kind!r} is not executed by this service")
