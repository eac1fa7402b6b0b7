"""Taxonomy imports: a Google product taxonomy file or a simple CSV of paths into the Category tree.

Upserts: importing the same file twice changes nothing. Leaf and exclusive flags are recomputed at the end
for every node the file touched (a node that gained a child is no longer a leaf, and with the default
exclusivity no longer exclusive). Bad lines become ImportRowIssue rows; they never stop the import.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import IntegrityError, reset_queries, transaction
from django.db.models import Exists, OuterRef
from django.db.models.functions import Lower

from labelapp.catalogue import normalise
from labelapp.catalogue.models import Category, ImportRun, Label, RowOutcome
from labelapp.catalogue.services.categories import category_path_ensure
from labelapp.catalogue.services.imports.files import FeedFile, FileLine, ImportFileError, ProgressCallback
from labelapp.catalogue.services.imports.readers import csv_rows
from labelapp.catalogue.services.imports.runs import (
    RowIssueBuffer,
    import_run_fail,
    import_run_start,
    import_run_succeed,
)

logger = logging.getLogger(__name__)

TAXONOMY_FORMATS = ("google", "csv")
TAXONOMY_BATCH_SIZE = 500
PATH_COLUMNS = ("path", "full_path", "category_path", "category")
EXCLUSIVE_COLUMNS = ("exclusive", "is_exclusive")
ID_COLUMNS = ("id", "external_id")
NAME_MAX_LENGTH = Category._meta.get_field("name").max_length
FULL_PATH_MAX_LENGTH = Category._meta.get_field("full_path").max_length
EXTERNAL_ID_MAX_LENGTH = Category._meta.get_field("external_id").max_length


@dataclass(slots=True)
class TaxonomyEntry:
    line: int
    raw_text: str
    names: list[str] | None = None
    external_id: str | None = None  # None: the path is the id (category_path_ensure's default)
    exclusive: bool | None = None  # None: decided by --exclusive-file or by being a leaf
    rejected: str = ""


def taxonomy_format_detect(path: Path) -> str:
    """Return 'csv' for .csv/.tsv files, 'google' otherwise (Google publishes .txt)."""
    suffixes = [suffix.lower() for suffix in path.suffixes if suffix.lower() != ".gz"]
    return "csv" if suffixes and suffixes[-1] in (".csv", ".tsv") else "google"


def _entry_checked(entry: TaxonomyEntry) -> TaxonomyEntry:
    if entry.rejected:
        return entry
    if not entry.names:
        entry.rejected = "empty category path"
    elif any(len(name) > NAME_MAX_LENGTH for name in entry.names):
        entry.rejected = f"a category name is longer than {NAME_MAX_LENGTH} characters"
    elif len(normalise.PATH_SEPARATOR.join(entry.names)) > FULL_PATH_MAX_LENGTH:
        entry.rejected = f"category path longer than {FULL_PATH_MAX_LENGTH} characters"
    elif entry.external_id is not None and len(entry.external_id) > EXTERNAL_ID_MAX_LENGTH:
        entry.rejected = f"category id longer than {EXTERNAL_ID_MAX_LENGTH} characters"
    return entry


def google_taxonomy_entries(lines: Iterator[FileLine]) -> Iterator[TaxonomyEntry]:
    """Yield an entry per 'ID - A > B > C' line; '#' lines (the version header) and blank lines are skipped."""
    for line in lines:
        text = line.text.strip()
        if not text or text.startswith("#"):
            continue
        if line.problem:
            yield TaxonomyEntry(line.number, text, rejected=line.problem)
            continue
        try:
            external_id, names = normalise.google_taxonomy_line_parse(text)
        except ValueError as exc:
            yield TaxonomyEntry(line.number, text, rejected=str(exc))
            continue
        yield _entry_checked(TaxonomyEntry(line.number, text, names=names, external_id=external_id))


def csv_taxonomy_entries(lines: Iterator[FileLine], *, sample: str) -> Iterator[TaxonomyEntry]:
    """Yield an entry per row of a 'path[,exclusive][,id]' CSV (header required, any path delimiter)."""
    columns: dict[str, str | None] = {}

    def header_check(header: list[str]) -> None:
        lowered = {name.lower(): name for name in reversed(header)}
        for role, candidates in (("path", PATH_COLUMNS), ("exclusive", EXCLUSIVE_COLUMNS), ("id", ID_COLUMNS)):
            columns[role] = next((lowered[name] for name in candidates if name in lowered), None)
        if columns["path"] is None:
            raise ImportFileError(f"the CSV header needs a path column ({', '.join(PATH_COLUMNS)}); "
                                  f"found {', '.join(header)}")

    delimiter = normalise.csv_delimiter_sniff(sample)
    for row in csv_rows(lines, delimiter=delimiter, header_check=header_check):
        if row.rejected:
            yield TaxonomyEntry(row.line, row.raw_text, rejected=row.rejected)
            continue
        record = row.record
        entry = TaxonomyEntry(row.line, row.raw_text, names=normalise.category_path_split(record[columns["path"]]))
        if columns["id"] is not None:
            entry.external_id = record[columns["id"]].strip() or None
        if columns["exclusive"] is not None:
            try:
                entry.exclusive = normalise.bool_parse(record[columns["exclusive"]])
            except ValueError as exc:
                entry.rejected = str(exc)
        yield _entry_checked(entry)


def exclusive_entries_read(*, path: Path) -> list[tuple[int, str]]:
    """Read an exclusive file: (line number, path or id) per non-blank, non-'#' line."""
    entries = []
    try:
        with FeedFile(path) as feed:
            for line in feed.lines():
                text = line.text.strip()
                if text and not text.startswith("#"):
                    entries.append((line.number, text))
    except ImportFileError as exc:
        raise ImportFileError(f"exclusive file: {exc}") from exc
    return entries


class _TaxonomyLoader:
    """Ensure paths in the tree, remembering what the import created, changed and touched."""

    def __init__(self):
        self.cache: dict[str, Category] = {node.full_path: node for node in Category.objects.all()}
        self.path_by_external_id = {node.external_id: path for path, node in self.cache.items()}
        self.before = {node.id: (node.is_leaf, node.is_exclusive, node.external_id) for node in self.cache.values()}
        self.touched: set[int] = set()
        self.explicit: dict[int, bool] = {}
        self.created = 0
        self.seen_ids: dict[str, tuple[int, str]] = {}
        self.seen_paths: dict[str, tuple[int, str | None]] = {}

    def load(self, entry: TaxonomyEntry) -> str:
        """Ensure an entry's node; return the reason it is rejected ('' when loaded)."""
        full_path = normalise.PATH_SEPARATOR.join(entry.names)
        external_id = entry.external_id
        if external_id is not None:
            if external_id in self.seen_ids and self.seen_ids[external_id][1] != full_path:
                line, other = self.seen_ids[external_id]
                return f"id {external_id} is also on line {line} for {other!r}"
            owner = self.path_by_external_id.get(external_id)
            if owner is not None and owner != full_path:
                return f"id {external_id} already names {owner!r}"
            self.seen_ids[external_id] = (entry.line, full_path)
        if full_path in self.seen_paths and self.seen_paths[full_path][1] != external_id:
            line, other_id = self.seen_paths[full_path]
            return f"path already on line {line} with id {other_id}"
        self.seen_paths[full_path] = (entry.line, external_id)

        known = set(self.cache)
        try:
            node = category_path_ensure(names=entry.names, external_id=external_id, cache=self.cache)
        except IntegrityError as exc:
            # The savepoint rolled back: forget the nodes it created.
            for path in set(self.cache) - known:
                del self.cache[path]
            return f"conflicts with an existing category: {str(exc).splitlines()[0]}"
        self.created += len(self.cache) - len(known)
        for depth in range(1, len(entry.names) + 1):
            ancestor = self.cache[normalise.PATH_SEPARATOR.join(entry.names[:depth])]
            self.path_by_external_id[ancestor.external_id] = ancestor.full_path
        self.touched.update(node.lineage)
        if entry.exclusive is not None:
            self.explicit[node.id] = entry.exclusive
        return ""


def _exclusive_ids_resolve(entries: list[tuple[int, str]], issues: RowIssueBuffer) -> set[int]:
    """Map exclusive-file entries (a path with any delimiter, or an id) to category ids; report the unknown."""
    ids: set[int] = set()
    for start in range(0, len(entries), 1000):
        chunk = entries[start:start + 1000]
        keys = {text: normalise.category_path_normalise(text).lower() for _, text in chunk}
        by_id = dict(Category.objects.filter(external_id__in=list(keys)).values_list("external_id", "id"))
        by_path = dict(Category.objects.annotate(path_lower=Lower("full_path"))
                       .filter(path_lower__in=set(keys.values())).values_list("path_lower", "id"))
        for line, text in chunk:
            category_id = by_id.get(text) or by_path.get(keys[text])
            if category_id is None:
                issues.add(line=line, outcome=RowOutcome.WARNING, reason=f"exclusive file: {text!r} names no category",
                           raw=text)
            else:
                ids.add(category_id)
    return ids


def _flags_recompute(loader: _TaxonomyLoader, *, exclusive_ids: set[int] | None, issues: RowIssueBuffer) -> int:
    """Recompute is_leaf and is_exclusive of the touched nodes; return how many existing nodes changed."""

    def flag_set(queryset, name: str, value: bool) -> None:
        queryset.exclude(**{name: value}).update(**{name: value})  # only rows that change

    touched = Category.objects.filter(id__in=list(loader.touched))
    has_children = Exists(Category.objects.filter(parent_id=OuterRef("pk")))
    flag_set(touched.filter(has_children), "is_leaf", False)
    flag_set(touched.filter(~has_children), "is_leaf", True)

    explicit = list(loader.explicit)
    for value in (True, False):
        flag_set(Category.objects.filter(id__in=[i for i, flag in loader.explicit.items() if flag is value]),
                 "is_exclusive", value)
    implicit = touched.exclude(id__in=explicit)
    if exclusive_ids is None:
        flag_set(implicit.filter(is_leaf=True), "is_exclusive", True)
        flag_set(implicit.filter(is_leaf=False), "is_exclusive", False)
    else:
        flag_set(implicit.exclude(id__in=list(exclusive_ids)), "is_exclusive", False)
        flag_set(Category.objects.filter(id__in=list(exclusive_ids)).exclude(id__in=explicit), "is_exclusive", True)

    changed, lost_exclusive = 0, []
    existing = [node_id for node_id in loader.touched | (exclusive_ids or set()) if node_id in loader.before]
    for node_id, is_leaf, is_exclusive, external_id in Category.objects.filter(id__in=existing).values_list(
            "id", "is_leaf", "is_exclusive", "external_id"):
        was_leaf, was_exclusive, was_external_id = loader.before[node_id]
        if (is_leaf, is_exclusive, external_id) != (was_leaf, was_exclusive, was_external_id):
            changed += 1
        if was_exclusive and not is_exclusive:
            lost_exclusive.append(node_id)
    if lost_exclusive:
        labels = Label.objects.filter(category_id__in=lost_exclusive).count()
        if labels:
            issues.add(line=0, outcome=RowOutcome.WARNING,
                       reason=f"{labels} human labels point at {len(lost_exclusive)} categories that are no longer "
                              "exclusive: review them")
    return changed


def taxonomy_import(*, import_run: ImportRun, path: Path, file_format: str | None = None,
                    exclusive_path: Path | None = None, progress: ProgressCallback | None = None) -> ImportRun:
    """Import a taxonomy file (Google 'ID - A > B' lines or a 'path,exclusive' CSV) into the category tree.

    Exclusive nodes are the leaves, or those listed in `exclusive_path` (one path or id a line); a CSV
    `exclusive` column wins over both. Takes a queued run (a duplicate delivery returns it untouched); an
    unreadable file marks it failed and returns it, any other error marks it failed and is raised.
    """
    if not import_run_start(import_run=import_run):
        return import_run
    counts = {"rows_total": 0, "rows_created": 0, "rows_updated": 0, "rows_rejected": 0}
    issues = RowIssueBuffer(import_run=import_run)
    try:
        file_format = file_format or taxonomy_format_detect(path)
        if file_format not in TAXONOMY_FORMATS:
            raise ImportFileError(f"unknown taxonomy format {file_format!r} ({' or '.join(TAXONOMY_FORMATS)})")
        exclusive_entries = exclusive_entries_read(path=exclusive_path) if exclusive_path else None
        loader = _TaxonomyLoader()
        with FeedFile(path) as feed:
            lines = feed.lines()
            if file_format == "google":
                entries = google_taxonomy_entries(lines)
            else:
                first = next(lines, None)
                if first is None:
                    raise ImportFileError("the file is empty")
                entries = csv_taxonomy_entries(itertools.chain([first], lines), sample=first.text)
            done = False
            while not done:
                with transaction.atomic():
                    for _ in range(TAXONOMY_BATCH_SIZE):
                        entry = next(entries, None)
                        if entry is None:
                            done = True
                            break
                        counts["rows_total"] += 1
                        reason = entry.rejected or loader.load(entry)
                        if reason:
                            counts["rows_rejected"] += 1
                            issues.add(line=entry.line, outcome=RowOutcome.REJECTED, reason=reason, raw=entry.raw_text)
                    issues.flush()
                    counts["rows_created"] = loader.created
                    ImportRun.objects.filter(pk=import_run.pk).update(**counts)
                reset_queries()  # under DEBUG Django would keep every query of the import
                if progress:
                    progress(feed.position(), feed.size)
        with transaction.atomic():
            exclusive_ids = _exclusive_ids_resolve(exclusive_entries, issues) if exclusive_entries is not None else None
            counts["rows_updated"] = _flags_recompute(loader, exclusive_ids=exclusive_ids, issues=issues)
            issues.flush()
    except ImportFileError as exc:
        import_run_fail(import_run=import_run, error=str(exc))
        return import_run
    except BaseException as exc:
        logger.exception("taxonomy import %s failed", import_run.pk)
        import_run_fail(import_run=import_run, error=f"{type(exc).__name__}: {exc}")
        raise
    import_run_succeed(import_run=import_run, counts=counts)
    return import_run

