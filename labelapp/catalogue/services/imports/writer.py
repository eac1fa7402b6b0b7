"""The product batch writer: upsert a batch of drafts with their images, feed categories and row issues."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db import DataError, IntegrityError, reset_queries, transaction

from labelapp.catalogue.models import ImportRowIssue, ImportRun, Product, RowOutcome, split_for
from labelapp.catalogue.services.feed_categories import (
    FeedCategoryResolver,
    FeedCategoryTally,
    FeedMatch,
    source_products_lock,
)
from labelapp.catalogue.services.imports.drafts import ProductDraft
from labelapp.catalogue.services.imports.images import ImageOutcome, ImageStore
from labelapp.catalogue.services.imports.runs import RowIssueBuffer
from labelapp.catalogue.services.product_categories import products_category_refresh

UPDATE_FIELDS = ["raw", "title", "description", "brand", "category_path", "gender", "size", "price", "currency",
                 "attributes", "image_ref", "image", "image_error", "feed_category", "import_run", "updated_at"]


@dataclass
class ImportCounts:
    """A product import's counters, named as the ImportRun fields they are saved to."""

    rows_total: int = 0
    rows_created: int = 0
    rows_updated: int = 0
    rows_rejected: int = 0
    rows_repaired: int = 0
    images_stored: int = 0
    images_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class ProductBatchWriter:
    """Upsert one batch of drafts: images first (no lock held), then one short transaction per batch."""

    def __init__(self, *, import_run: ImportRun, source: str, image_store: ImageStore, executor: ThreadPoolExecutor,
                 issues: RowIssueBuffer, counts: ImportCounts):
        self.import_run = import_run
        self.source = source
        self.image_store = image_store
        self.executor = executor
        self.issues = issues
        self.counts = counts
        # The feed category is decided by the source's feed category map (services.feed_categories) alone.
        self.categories = FeedCategoryResolver(source=source)
        self.category_tally = FeedCategoryTally()

    def flush(self, drafts: dict[str, ProductDraft]) -> None:
        """Write a batch and the pending row issues; a row the database refuses is isolated and rejected."""
        try:
            self._images(drafts)
            try:
                self._write(drafts)
            except (DataError, IntegrityError) as exc:
                # Validation should leave nothing for the database to refuse; if it does, halve the batch
                # until the one bad row is alone, and reject it rather than fail the import.
                if not drafts:
                    raise
                if len(drafts) > 1:
                    items = list(drafts.items())
                    self.flush(dict(items[: len(items) // 2]))
                    self.flush(dict(items[len(items) // 2:]))
                    return
                [draft] = drafts.values()
                self.counts.rows_rejected += 1
                self.issues.add(line=draft.line, outcome=RowOutcome.REJECTED, raw=draft.raw_text,
                                reason=f"the database refused the row: {str(exc).strip().splitlines()[0]}")
                self._write({})
        finally:
            # Under DEBUG Django keeps every SQL string; a batch insert's is megabytes: a long import would grow.
            reset_queries()

    def _write(self, drafts: dict[str, ProductDraft]) -> None:
        ids = list(drafts)
        updated = 0
        tallied: list[tuple[str, int | None]] = []
        try:
            with transaction.atomic():
                if ids:
                    updated, tallied = self._upsert(drafts)
                    self._tally(tallied, sign=1)
                ImportRowIssue.objects.bulk_create(self.issues.pending)
                counts = self.counts.as_dict()
                counts["rows_created"] += len(ids) - updated
                counts["rows_updated"] += updated
                ImportRun.objects.filter(pk=self.import_run.pk).update(
                    **counts, category_report=self.category_tally.report(mapping=self.categories.description))
        except BaseException:
            self._tally(tallied, sign=-1)  # the batch was rolled back: so is its count
            raise
        # Only once committed: a refused batch is written again, in halves.
        self.issues.pending = []
        self.counts.rows_created += len(ids) - updated
        self.counts.rows_updated += updated

    def _upsert(self, drafts: dict[str, ProductDraft]) -> tuple[int, list[tuple[str, int | None]]]:
        """Upsert the batch's products in the caller's transaction; return how many existed, and (path, feed
        category) per product."""
        # Serialise batches of one source, so created/updated counts are exact under concurrency, and a change of
        # the source's feed category map (re-mapped under the same lock) is read before this batch is mapped.
        source_products_lock(source=self.source)
        self.categories.refresh()
        categories = self.categories.resolve(draft.values["category_path"] for draft in drafts.values())
        # Locked, so a label submitted meanwhile waits for this batch instead of racing its category.
        updated = len(Product.objects.select_for_update().filter(source=self.source, external_id__in=list(drafts))
                      .values_list("id", flat=True))
        products = [self._product(draft, categories) for draft in drafts.values()]
        Product.objects.bulk_create(products, update_conflicts=True, unique_fields=["source", "external_id"],
                                    update_fields=UPDATE_FIELDS)
        # The feed category is one source of the effective category; the catalogue's one writer decides.
        products_category_refresh(product_ids=[product.pk for product in products])
        for product in products:
            # Django's FieldFile points back at its instance; breaking the cycle frees the batch
            # now rather than at the next full garbage collection.
            product.__dict__.pop("image", None)
        return updated, [(product.category_path, product.feed_category_id) for product in products]

    def _tally(self, batch: list[tuple[str, int | None]], *, sign: int) -> None:
        for path, category_id in batch:
            self.category_tally.add(path=path, category_id=category_id, sign=sign)

    def _images(self, drafts: dict[str, ProductDraft]) -> None:
        """Decide each draft's image once (stored, kept, failed), copying files outside any transaction."""
        todo = {external_id: draft for external_id, draft in drafts.items() if draft.image is None}
        if not todo:
            return
        current = {
            external_id: (image, image_ref)
            for external_id, image, image_ref in Product.objects.filter(source=self.source, external_id__in=list(todo))
            .values_list("external_id", "image", "image_ref")
        }
        jobs = [(external_id, draft) for external_id, draft in todo.items()
                if self.image_store.wanted(image_ref=draft.image_ref)]

        def run(job: tuple[str, ProductDraft]) -> ImageOutcome:
            external_id, draft = job
            image, image_ref = current.get(external_id, ("", ""))
            return self.image_store.outcome(external_id=external_id, image_ref=draft.image_ref,
                                            current_image=image, current_ref=image_ref)

        outcomes = list(self.executor.map(run, jobs)) if len(jobs) > 1 else list(map(run, jobs))
        for (external_id, draft), outcome in zip(jobs, outcomes, strict=True):
            draft.image = outcome
            self.counts.images_stored += outcome.stored
            self.counts.images_failed += outcome.failed
            if outcome.failed:
                self.issues.add(line=draft.line, outcome=RowOutcome.WARNING,
                                reason=f"image for {external_id!r} not stored: {outcome.error}")
        for external_id, draft in todo.items():
            if draft.image is None:  # nothing to do for this row's image: it keeps what it had
                image, image_ref = current.get(external_id, ("", ""))
                draft.image = ImageOutcome(image=image, image_ref=draft.image_ref or image_ref)

    def _product(self, draft: ProductDraft, categories: dict[str, FeedMatch]) -> Product:
        values, image = draft.values, draft.image
        feed_id = categories[values["category_path"]].category_id
        return Product(
            source=self.source,
            split=split_for(source=self.source, external_id=values["external_id"]),
            image=image.image,
            image_ref=image.image_ref,
            image_error=image.error,
            feed_category_id=feed_id,
            import_run=self.import_run,
            **values,
        )
