"""Feed category mapping: the one place that decides a product's feed category (`Product.feed_category`).

A feed sends its own category paths ('Home Furnishing > Curtains & Accessories > Curtains > Eyelet Curtains').
The source's FeedCategoryMap says how they meet the taxonomy (no map row: exact):

    exact     the path is a node's full path
    cut       the path's first `levels` levels are a node's full path
    ancestor  the deepest node whose full path is the path's leading levels (the path itself when it is one)

Names match case-insensitively, and a path that is a number names a node by its taxonomy id (Google-style
feeds). A FeedCategoryMapEntry for a path (case-insensitive) wins over the mode, naming a node or none.

The product import asks a FeedCategoryResolver for every batch (it re-reads the map when its version moved);
changing the map re-maps the source's products already in the catalogue (`feed_categories_remap`: set-based
SQL in id ranges, a transaction each) and hands them to the catalogue's one writer of effective categories,
which publishes CATEGORIES_CHANGED for those whose category changed.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Value
from django.db.models.functions import Lower

from labelapp.catalogue import normalise
from labelapp.catalogue.models import Category, FeedCategoryMap, FeedCategoryMapEntry, FeedCategoryMode, Product
from labelapp.catalogue.services.product_categories import products_category_refresh

REMAP_BATCH = 20_000
FEED_PATH_MAX_LENGTH = FeedCategoryMapEntry._meta.get_field("feed_path").max_length


class How:
    """How a feed path found its node (or did not): shown to reviewers, counted in import reports."""

    EXACT = "exact"
    CUT = "cut"
    ANCESTOR = "ancestor"
    TABLE = "table"
    UNMATCHED = "unmatched"


@dataclass(frozen=True)
class FeedMatch:
    category_id: int | None
    how: str


UNMATCHED = FeedMatch(None, How.UNMATCHED)


def source_products_lock(*, source: str) -> None:
    """Serialise writers of one source's products until the caller's transaction ends (imports, re-maps)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"labelapp.products_import:{source}"])


def _levels(path: str) -> list[str]:
    return [name.lower() for name in path.split(normalise.PATH_SEPARATOR.strip())] if path else []


def _key(levels: list[str]) -> str:
    return normalise.PATH_SEPARATOR.join(name.strip() for name in levels)


class FeedCategoryResolver:
    """Map one source's normalised feed paths to taxonomy nodes with its map, the tree held in memory.

    The tree (full paths and taxonomy ids, lower-cased) is small next to a feed (a few thousand nodes), so
    every lookup, the ancestor mode's included, is a dict hit. `refresh()` re-reads map and tree when either
    changed (two small queries): call it once per batch, inside the batch's source lock.
    """

    CACHE_LIMIT = 50_000

    def __init__(self, *, source: str):
        self.source = source
        self._map_version: object = object()
        self._tree_signature: object = object()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the source's map, and the tree, if they changed since they were read."""
        config = FeedCategoryMap.objects.filter(source=self.source).values("mode", "levels", "version").first()
        version = config["version"] if config else None
        if version != self._map_version:
            self._map_version = version
            self.mode = config["mode"] if config else FeedCategoryMode.EXACT
            self.levels = config["levels"] if config else None
            self.table = {path.lower(): category_id for path, category_id in FeedCategoryMapEntry.objects.filter(
                source=self.source).values_list("feed_path", "category_id")}
            self._cache: dict[str, FeedMatch] = {}
        signature = tuple(Category.objects.aggregate(n=Count("id"), last=Max("id")).values())
        if signature != self._tree_signature:
            self._tree_signature = signature
            self.by_path = {full_path.lower(): pk for pk, full_path in Category.objects.values_list("id", "full_path")}
            self.by_external_id = dict(Category.objects.values_list("external_id", "id"))
            self._cache = {}

    @property
    def description(self) -> str:
        """The mode in words: 'exact', 'cut 3', 'ancestor'."""
        return f"{self.mode} {self.levels}" if self.mode == FeedCategoryMode.CUT else str(self.mode)

    def resolve(self, paths: Iterable[str]) -> dict[str, FeedMatch]:
        """Return the match of every path (keys as given; '' is unmatched)."""
        if len(self._cache) > self.CACHE_LIMIT:
            self._cache = {}
        found = {}
        for path in paths:
            match = self._cache.get(path)
            if match is None:
                match = self._cache[path] = self.match(path)
            found[path] = match
        return found

    def match(self, path: str) -> FeedMatch:
        """Return the node one feed path maps to, and how."""
        if not path:
            return UNMATCHED
        lowered = path.lower()
        if lowered in self.table:
            return FeedMatch(self.table[lowered], How.TABLE)
        levels = _levels(path)
        if self.mode == FeedCategoryMode.CUT and self.levels and len(levels) > self.levels:
            category_id = self._node(_key(levels[: self.levels]))
            return FeedMatch(category_id, How.CUT) if category_id else UNMATCHED
        category_id = self._node(_key(levels))
        if category_id:
            return FeedMatch(category_id, How.EXACT)
        if self.mode == FeedCategoryMode.ANCESTOR:
            for depth in range(len(levels) - 1, 0, -1):
                category_id = self.by_path.get(_key(levels[:depth]))
                if category_id:
                    return FeedMatch(category_id, How.ANCESTOR)
        return UNMATCHED

    def _node(self, key: str) -> int | None:
        category_id = self.by_path.get(key)
        if category_id is None and key.isdigit():
            # A Google-style feed names its category by taxonomy id ('1604') rather than by path.
            category_id = self.by_external_id.get(key)
        return category_id


@dataclass
class FeedCategoryTally:
    """An import's count of written products whose feed path matched a node, did not, or was empty."""

    TOP = 10
    DISTINCT_LIMIT = 50_000  # unmatched paths counted one by one; past it only the total grows

    matched: int = 0
    unmatched: int = 0
    without_path: int = 0
    unmatched_paths: Counter = field(default_factory=Counter)

    def add(self, *, path: str, category_id: int | None, sign: int = 1) -> None:
        """Count one product (`sign=-1` takes it back: its batch was rolled back)."""
        if not path:
            self.without_path += sign
        elif category_id:
            self.matched += sign
        else:
            self.unmatched += sign
            if path in self.unmatched_paths or len(self.unmatched_paths) < self.DISTINCT_LIMIT:
                self.unmatched_paths[path] += sign
                if self.unmatched_paths[path] <= 0:
                    del self.unmatched_paths[path]

    def report(self, *, mapping: str) -> dict:
        """The ImportRun.category_report form: counts, the most frequent unmatched paths, the mapping used."""
        top = heapq.nlargest(self.TOP, self.unmatched_paths.items(), key=lambda item: (item[1], item[0]))
        return {"matched": self.matched, "unmatched": self.unmatched, "without_path": self.without_path,
                "top_unmatched": [{"path": path, "products": count} for path, count in top], "mapping": mapping}


@dataclass(frozen=True)
class RemapResult:
    products_remapped: int
    categories_changed: int


def feed_categories_remap(*, source: str, feed_paths: Iterable[str] | None = None) -> RemapResult:
    """Set the feed category of the source's products (those with these paths, case-insensitive; all when None)
    from the source's map, then recompute their effective categories.

    Set-based: one UPDATE per range of REMAP_BATCH product ids, each in its own transaction under the source's
    lock (an import batch of the source waits, then reads the new map). Idempotent: run it again to finish
    what an interruption left.
    """
    resolver = FeedCategoryResolver(source=source)
    paths = list(Product.objects.filter(source=source).order_by().values_list("category_path", flat=True).distinct())
    if feed_paths is not None:
        wanted = {path.lower() for path in feed_paths}
        paths = [path for path in paths if path.lower() in wanted]
    if not paths:
        return RemapResult(0, 0)
    bounds = Product.objects.filter(source=source).aggregate(first=Min("id"), last=Max("id"))
    remapped = changed = 0
    product = Product._meta.db_table
    for start in range(bounds["first"], bounds["last"] + 1, REMAP_BATCH):
        with transaction.atomic():
            source_products_lock(source=source)
            # Under the lock, with the map as it is now: of two re-maps running at once, the later map wins.
            resolver.refresh()
            matches = resolver.resolve(paths)
            category_ids = [matches[path].category_id for path in paths]
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""UPDATE {product} AS p SET feed_category_id = m.category_id, updated_at = now()
                        FROM unnest(%s::text[], %s::bigint[]) AS m(path, category_id)
                        WHERE p.source = %s AND p.id >= %s AND p.id < %s AND p.category_path = m.path
                          AND p.feed_category_id IS DISTINCT FROM m.category_id
                        RETURNING p.id""",
                    [paths, category_ids, source, start, start + REMAP_BATCH])
                ids = [row[0] for row in cursor.fetchall()]
            if ids:
                remapped += len(ids)
                changed += len(products_category_refresh(product_ids=ids))
    return RemapResult(remapped, changed)


def _map_locked(*, source: str) -> FeedCategoryMap:
    """Return the source's map row, created (exact) when missing, locked until the transaction ends."""
    FeedCategoryMap.objects.get_or_create(source=source)
    return FeedCategoryMap.objects.select_for_update().get(source=source)


def feed_category_map_update(*, source: str, mode: str, levels: int | None,
                             user: AbstractBaseUser | None) -> tuple[FeedCategoryMap, RemapResult]:
    """Set how a source's feed paths meet the taxonomy, then re-map its products (each batch committed on its own).

    Raises ValidationError for an unknown mode, or the cut mode without levels.
    """
    if not source:
        raise ValidationError({"source": "A source name is needed."})
    with transaction.atomic():
        feed_map = _map_locked(source=source)
        feed_map.mode, feed_map.levels = mode, (levels if mode == FeedCategoryMode.CUT else None)
        feed_map.updated_by = user
        feed_map.version += 1
        feed_map.full_clean()
        feed_map.save()
    return feed_map, feed_categories_remap(source=source)


def _entry_for(*, source: str, feed_path: str):
    return FeedCategoryMapEntry.objects.alias(path_lower=Lower("feed_path")).filter(
        source=source, path_lower=Lower(Value(feed_path)))


def feed_category_entry_set(*, source: str, feed_path: str, category: Category | None,
                            user: AbstractBaseUser | None) -> tuple[FeedCategoryMapEntry, RemapResult]:
    """Map one feed path of a source (case-insensitive) to a node, or to none (`category=None`), whatever the
    mode says; then re-map the source's products with that path.

    `feed_path` is the normalised path products carry ('A > B > C'), kept as given: it is never split again.
    """
    feed_path = feed_path.strip()
    if not feed_path:
        raise ValidationError({"feed_path": "A feed path is needed."})
    if len(feed_path) > FEED_PATH_MAX_LENGTH:
        raise ValidationError({"feed_path": f"A feed path has at most {FEED_PATH_MAX_LENGTH} characters."})
    with transaction.atomic():
        feed_map = _map_locked(source=source)
        entry = _entry_for(source=source, feed_path=feed_path).first() or FeedCategoryMapEntry(
            source=source, feed_path=feed_path)
        entry.category, entry.updated_by = category, user
        entry.full_clean(validate_constraints=False)  # the row is locked through its map: no race on the path
        entry.save()
        FeedCategoryMap.objects.filter(pk=feed_map.pk).update(version=F("version") + 1)
    return entry, feed_categories_remap(source=source, feed_paths=[feed_path])


def feed_category_entry_delete(*, source: str, feed_path: str) -> RemapResult:
    """Remove a feed path's table entry (the mode decides it again) and re-map the products with that path."""
    with transaction.atomic():
        feed_map = _map_locked(source=source)
        deleted, _ = _entry_for(source=source, feed_path=feed_path.strip()).delete()
        if deleted:
            FeedCategoryMap.objects.filter(pk=feed_map.pk).update(version=F("version") + 1)
    return feed_categories_remap(source=source, feed_paths=[feed_path.strip()]) if deleted else RemapResult(0, 0)
