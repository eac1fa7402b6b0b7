"""The product import: stream a feed file through drafts into batches, and keep its ImportRun up to date."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.conf import settings

from labelapp.catalogue.models import ImportRun, RowOutcome
from labelapp.catalogue.services.imports.drafts import FieldReader, ProductDraft, product_draft_build
from labelapp.catalogue.services.imports.files import FeedFile, ImportFileError, ProgressCallback, file_format_detect
from labelapp.catalogue.services.imports.images import ImageStore
from labelapp.catalogue.services.imports.mapping import ImportMapping
from labelapp.catalogue.services.imports.readers import FeedRow, FeedRows
from labelapp.catalogue.services.imports.runs import (
    RowIssueBuffer,
    import_run_fail,
    import_run_start,
    import_run_succeed,
)
from labelapp.catalogue.services.imports.writer import ImportCounts, ProductBatchWriter

logger = logging.getLogger(__name__)

IMAGE_WORKERS = 8


def products_import(*, import_run: ImportRun, path: Path, mapping: ImportMapping | None = None,
                    images_dir: Path | None = None, file_format: str | None = None, batch_size: int | None = None,
                    fetch_image_urls: bool = True, progress: ProgressCallback | None = None) -> ImportRun:
    """Import a product feed into `import_run.source`, upserting by (source, external_id).

    Takes a queued run (a second delivery of the same run returns it untouched). A file that cannot be read
    marks the run failed and returns it; any other error marks it failed and is raised. Batches committed
    before a failure stay, with counts on the run that match them.
    """
    if not import_run_start(import_run=import_run):
        return import_run
    mapping = mapping or ImportMapping.default()
    source = import_run.source or mapping.source
    if not source:
        import_run_fail(import_run=import_run, error="no source name: give one (--source) or set it in the mapping")
        return import_run
    if not import_run.source:
        ImportRun.objects.filter(pk=import_run.pk).update(source=source)
        import_run.source = source
    if images_dir is not None and not images_dir.is_dir():
        import_run_fail(import_run=import_run, error=f"images folder {images_dir} does not exist")
        return import_run
    batch_size = batch_size or settings.IMPORT_BATCH_SIZE
    counts = ImportCounts()
    issues = RowIssueBuffer(import_run=import_run)
    executor = ThreadPoolExecutor(max_workers=IMAGE_WORKERS, thread_name_prefix="import-images")
    writer = ProductBatchWriter(
        import_run=import_run, source=source, executor=executor, issues=issues, counts=counts,
        image_store=ImageStore(source=source, images_dir=images_dir, fetch_urls=fetch_image_urls),
    )
    try:
        with FeedFile(path) as feed:
            rows = FeedRows(feed, file_format=file_format or mapping.file_format or file_format_detect(path),
                            mapping=mapping)
            _rows_write(rows, feed=feed, mapping=mapping, writer=writer, issues=issues, counts=counts,
                        batch_size=batch_size, progress=progress)
    except ImportFileError as exc:
        import_run_fail(import_run=import_run, error=str(exc))
        return import_run
    except BaseException as exc:
        logger.exception("product import %s failed", import_run.pk)
        import_run_fail(import_run=import_run, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        executor.shutdown(wait=True)
    import_run_succeed(import_run=import_run, counts=counts.as_dict())
    return import_run


def _rows_write(rows: FeedRows, *, feed: FeedFile, mapping: ImportMapping, writer: ProductBatchWriter,
                issues: RowIssueBuffer, counts: ImportCounts, batch_size: int,
                progress: ProgressCallback | None) -> None:
    """Turn the feed's rows into drafts and write them in batches; of two rows with one external id the later wins."""
    drafts: dict[str, ProductDraft] = {}
    for row in rows:
        counts.rows_total += 1
        draft = _row_take(row, mapping=mapping, reader=rows.field_reader, issues=issues, counts=counts)
        if draft is not None:
            external_id = draft.values["external_id"]
            if external_id in drafts:
                issues.add(line=row.line, outcome=RowOutcome.WARNING, raw=row.raw_text,
                           reason=f"duplicate external id {external_id!r} (also on line "
                                  f"{drafts[external_id].line}): this later row wins")
                del drafts[external_id]  # re-inserted below, so the batch keeps file order
            drafts[external_id] = draft
        if len(drafts) >= batch_size or len(issues) >= batch_size:
            writer.flush(drafts)
            drafts = {}
            if progress:
                progress(feed.position(), feed.size)
    writer.flush(drafts)
    if progress:
        progress(feed.size, feed.size)


def _row_take(row: FeedRow, *, mapping: ImportMapping, reader: FieldReader, issues: RowIssueBuffer,
              counts: ImportCounts) -> ProductDraft | None:
    """Turn a row into a draft, recording why it is rejected, how it was repaired, what it warns about."""
    reason = row.rejected
    draft = None
    if not reason:
        draft = product_draft_build(record=row.record, line=row.line, mapping=mapping, reader=reader,
                                    raw_text=row.raw_text)
        if isinstance(draft, str):
            reason, draft = draft, None
    if reason:
        counts.rows_rejected += 1
        issues.add(line=row.line, outcome=RowOutcome.REJECTED, reason=reason, raw=row.raw_text)
        return None
    if row.repaired:
        counts.rows_repaired += 1
        issues.add(line=row.line, outcome=RowOutcome.REPAIRED, reason=row.repaired, raw=row.raw_text)
    for warning in draft.warnings:
        issues.add(line=row.line, outcome=RowOutcome.WARNING, reason=warning, raw=row.raw_text)
    return draft
