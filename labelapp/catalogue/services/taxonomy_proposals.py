"""Taxonomy proposals: count a feed's (or an imported source's) category paths, and apply a proposed tree.

The proposal itself is pure (`labelapp.catalogue.taxonomy_proposal`). This module reads the paths the way the
product import does (its readers, mapping and drafts: the same rows rejected, the same path normalisation),
keeps an uploaded feed's counted paths for the proposal page (only the counts: the file is not kept), and
applies a proposal through the taxonomy import, from the very CSV `import_taxonomy` reads, so categories are
created the same way, idempotently, with an ImportRun report.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from labelapp.catalogue import selectors
from labelapp.catalogue.models import Category, ImportKind, ImportRun
from labelapp.catalogue.services.import_jobs import UPLOAD_SUFFIXES
from labelapp.catalogue.services.imports.drafts import product_draft_build
from labelapp.catalogue.services.imports.files import FeedFile, ImportFileError, file_format_detect
from labelapp.catalogue.services.imports.mapping import ImportMapping, mapping_load
from labelapp.catalogue.services.imports.readers import FeedRows
from labelapp.catalogue.services.imports.runs import import_run_create
from labelapp.catalogue.services.taxonomy import taxonomy_import
from labelapp.catalogue.taxonomy_proposal import (
    ProposalOptions,
    TaxonomyProposal,
    path_counts_collect,
    path_counts_split,
    proposal_csv_text,
)

PROPOSALS_FOLDER = "taxonomy-proposals"
# An upload's counted paths serve the page while someone reviews the proposal; older ones are deleted on the next
# upload. (The CSV an applied proposal was imported from stays: its ImportRun names it.)
UPLOAD_KEEP_S = 7 * 24 * 3600
_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
FEED_FORMATS = ("csv", "jsonl")


@dataclass
class FeedPaths:
    """A feed's category paths counted by product, and what reading it left out."""

    name: str  # the file's name, or 'source NAME'
    path_counts: Counter[tuple[str, ...]]
    rows_read: int = 0
    rows_rejected: int = 0  # rows the product import would reject: they are no products
    duplicate_ids: int = 0  # rows whose external id came again later: the later row counts, as in the import

    @property
    def products(self) -> int:
        return sum(self.path_counts.values())


def proposal_options_for_catalogue(**options) -> ProposalOptions:
    """ProposalOptions with the category tree's own limits on name and path length."""
    return ProposalOptions(max_name_length=Category._meta.get_field("name").max_length,
                           max_path_length=Category._meta.get_field("full_path").max_length, **options)


def feed_paths_read(*, path: Path, file_format: str | None = None, mapping: ImportMapping | None = None,
                    path_field: str = "") -> FeedPaths:
    """Count a feed file's category paths as the product import reads them; `path_field` overrides the mapping's.

    Raises ImportFileError when the file as a whole cannot be read (as the import would fail).
    """
    mapping = mapping or ImportMapping.default()
    if path_field:
        mapping = dataclasses.replace(mapping, category_path=(path_field,), category_columns=())
    if file_format is not None and file_format not in FEED_FORMATS:
        raise ImportFileError(f"unknown format {file_format!r} ({' or '.join(FEED_FORMATS)})")
    result = FeedPaths(name=path.name, path_counts=Counter())
    by_id: dict[str, str] = {}
    accepted = 0
    with FeedFile(path) as feed:
        rows = FeedRows(feed, file_format=file_format or mapping.file_format or file_format_detect(path),
                        mapping=mapping)
        for row in rows:
            result.rows_read += 1
            draft = row.rejected or product_draft_build(record=row.record, line=row.line, mapping=mapping,
                                                        reader=rows.field_reader)
            if isinstance(draft, str):
                result.rows_rejected += 1
                continue
            accepted += 1
            by_id[draft.values["external_id"]] = draft.values["category_path"]
    result.duplicate_ids = accepted - len(by_id)
    result.path_counts = path_counts_collect(by_id.values())
    return result


def source_paths_read(*, source: str) -> FeedPaths:
    """Count the feed category paths of the products already imported from `source` (Product.category_path)."""
    text_counts = selectors.product_category_path_counts(source=source)
    rows = sum(text_counts.values())
    return FeedPaths(name=f"source {source}", path_counts=path_counts_split(text_counts), rows_read=rows)


def _proposals_folder() -> Path:
    return Path(settings.MEDIA_ROOT) / PROPOSALS_FOLDER


def taxonomy_proposal_upload_store(*, uploaded_file: UploadedFile, mapping_file: UploadedFile | None = None,
                                   file_format: str | None = None, path_field: str = "") -> str:
    """Read an uploaded feed's category paths and keep their counts for the proposal page; return their token.

    Only the counts are kept (MEDIA_ROOT/taxonomy-proposals/<token>.json); the uploaded file is deleted once
    read. Raises ValidationError for a file type a product import cannot read, an invalid mapping or an
    unreadable file.
    """
    name = Path(uploaded_file.name or "upload").name.replace("\x00", "") or "upload"
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES[ImportKind.PRODUCTS]:
        allowed = ", ".join(sorted(UPLOAD_SUFFIXES[ImportKind.PRODUCTS]))
        raise ValidationError({"file": f"a feed is one of {allowed}, not {suffix or 'a file without a suffix'}"})
    with tempfile.TemporaryDirectory(prefix="taxonomy-proposal-") as folder:
        mapping = None
        if mapping_file is not None:
            try:
                mapping = mapping_load(path=_upload_copy(mapping_file, Path(folder) / "mapping.toml"))
            except ValueError as exc:
                raise ValidationError({"mapping": f"invalid mapping: {exc}"}) from exc
        try:
            paths = feed_paths_read(path=_upload_copy(uploaded_file, Path(folder) / name), file_format=file_format,
                                    mapping=mapping, path_field=path_field)
        except ImportFileError as exc:
            raise ValidationError({"file": str(exc)}) from exc
    token = uuid.uuid4().hex
    _proposals_folder().mkdir(parents=True, exist_ok=True)
    _stale_uploads_delete()
    data = {"name": paths.name, "rows_read": paths.rows_read, "rows_rejected": paths.rows_rejected,
            "duplicate_ids": paths.duplicate_ids,
            "paths": [[list(names), count] for names, count in sorted(paths.path_counts.items())]}
    (_proposals_folder() / f"{token}.json").write_text(json.dumps(data, ensure_ascii=False))
    return token


def _stale_uploads_delete() -> None:
    cutoff = time.time() - UPLOAD_KEEP_S
    for path in _proposals_folder().glob("*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:  # another request deleted it first
            pass


def _upload_copy(uploaded_file: UploadedFile, target: Path) -> Path:
    with target.open("wb") as out:
        for chunk in uploaded_file.chunks():
            out.write(chunk)
    return target


def taxonomy_proposal_upload_load(*, token: str) -> FeedPaths | None:
    """Return the counted paths an upload left under `token`; None for an unknown or malformed token."""
    if not _TOKEN_RE.match(token or ""):
        return None
    try:
        data = json.loads((_proposals_folder() / f"{token}.json").read_text())
    except (OSError, ValueError):
        return None
    return FeedPaths(name=data["name"], path_counts=Counter({tuple(names): count for names, count in data["paths"]}),
                     rows_read=data["rows_read"], rows_rejected=data["rows_rejected"],
                     duplicate_ids=data["duplicate_ids"])


def taxonomy_proposal_write(*, proposal: TaxonomyProposal, path: Path | None = None) -> Path:
    """Write the proposal as the CSV import_taxonomy reads, to `path` or kept under MEDIA_ROOT; return where."""
    if path is None:
        path = _proposals_folder() / uuid.uuid4().hex / "taxonomy.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(proposal_csv_text(proposal), encoding="utf-8")
    return path


def taxonomy_proposal_run_create(*, proposal: TaxonomyProposal, feed_name: str, csv_path: Path | None = None,
                                 user: AbstractBaseUser | None = None) -> ImportRun:
    """Write the proposal's CSV and queue its taxonomy import (an ImportRun that says which proposal it was)."""
    csv_path = taxonomy_proposal_write(proposal=proposal, path=csv_path)
    return import_run_create(kind=ImportKind.TAXONOMY, file_name=str(csv_path.resolve()),
                             source=f"proposed from {feed_name}"[:100], user=user,
                             options={"format": "csv", "proposal": proposal.options.as_dict()})


def taxonomy_proposal_apply(*, proposal: TaxonomyProposal, feed_name: str, user: AbstractBaseUser | None = None,
                            csv_path: Path | None = None) -> ImportRun:
    """Create the proposed categories through the taxonomy import (upserts: applying twice changes nothing).

    Returns the finished ImportRun: rows_created is how many categories were new, rows_updated how many
    existing ones changed their leaf or exclusive flag.
    """
    run = taxonomy_proposal_run_create(proposal=proposal, feed_name=feed_name, csv_path=csv_path, user=user)
    return taxonomy_import(import_run=run, path=Path(run.file_name), file_format="csv")
