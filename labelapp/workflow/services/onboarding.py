"""Onboarding a new catalogue in one flow: upload a feed, preview and fix its mapping, import, categories, rules,
a first model and a first labelling round.

Each step calls the service that owns it (the catalogue's import jobs, taxonomy and rules, the classifier's train
runs, the workflow's rounds); this module only adds what the flow itself needs: an uploaded feed kept until it
is imported (MEDIA_ROOT/onboarding/<token>/<name>, deleted on import or after UPLOAD_KEEP_S), a preview read
exactly as the import reads (its readers, mapping and drafts), and the mapping a reviewer chose written as the
TOML file an import takes.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.db import transaction

from classifier.models import TrainRun
from classifier.services.runs import train_run_create
from labelapp.catalogue import normalise
from labelapp.catalogue.models import ImportKind, ImportRun
from labelapp.catalogue.services.feed_categories import FeedCategoryResolver, feed_categories_remap
from labelapp.catalogue.services.import_jobs import UPLOAD_SUFFIXES, import_job_submit
from labelapp.catalogue.services.imports.drafts import product_draft_build
from labelapp.catalogue.services.imports.files import FeedFile, ImportFileError, file_format_detect
from labelapp.catalogue.services.imports.mapping import (
    DEFAULT_CATEGORY_PATH,
    DEFAULT_FIELDS,
    PRODUCT_FIELDS,
    ImportMapping,
)
from labelapp.catalogue.services.imports.readers import FeedRows, csv_rows, jsonl_rows
from labelapp.catalogue.services.rules import rules_apply, rules_bootstrap
from labelapp.workflow.models import LabellingRound
from labelapp.workflow.services.rounds import labelling_round_create

ONBOARDING_FOLDER = "onboarding"
UPLOAD_KEEP_S = 7 * 24 * 3600
_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
PREVIEW_ROWS = 10
PREVIEW_SCAN_ROWS = 20_000  # rows read for the category path counts: enough to judge, quick to re-render
COLUMN_SCAN_ROWS = 50  # JSON lines records whose keys make the column list
CATEGORY_LEVELS = 3
TOP_PATHS = 10

FIRST_MODEL = {"architecture": "logreg", "objectives": ["exclusive", "rule"], "epochs": 10}
FIRST_ROUND = {"strategy_mix": {"margin": 0.8, "random": 0.2}, "batch_size": 20}


# --- the uploaded feed -----------------------------------------------------------------------------------------


def _folder() -> Path:
    return Path(settings.MEDIA_ROOT) / ONBOARDING_FOLDER


def onboarding_upload_store(*, uploaded_file: UploadedFile) -> str:
    """Keep an uploaded feed for the preview until it is imported; return its token.

    Raises ValidationError for a file type a product import cannot read.
    """
    name = Path(uploaded_file.name or "upload").name.replace("\x00", "") or "upload"
    suffix = Path(name.removesuffix(".gz")).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES[ImportKind.PRODUCTS]:
        allowed = ", ".join(sorted(UPLOAD_SUFFIXES[ImportKind.PRODUCTS]))
        raise ValidationError({"file": f"a feed is one of {allowed}, not {suffix or 'a file without a suffix'}"})
    _stale_uploads_delete()
    token = uuid.uuid4().hex
    target = _folder() / token / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for chunk in uploaded_file.chunks():
            out.write(chunk)
    return token


def onboarding_upload_path(*, token: str) -> Path | None:
    """Return the feed kept under `token`; None for an unknown, malformed or deleted token."""
    if not _TOKEN_RE.match(token or ""):
        return None
    folder = _folder() / token
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    return files[0] if files else None


def _stale_uploads_delete() -> None:
    if not _folder().is_dir():
        return
    cutoff = time.time() - UPLOAD_KEEP_S
    for folder in _folder().iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:  # another request deleted it first
            pass


# --- the mapping a reviewer chose ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingChoice:
    """One column (or none, '') per product field, and the category path as one column or one column per level."""

    fields: dict[str, str]
    category_path: str = ""
    category_levels: tuple[str, ...] = ()
    source: str = ""

    def to_dict(self) -> dict:
        """The mapping in its TOML form (what ImportMapping.from_dict reads)."""
        data: dict = {"fields": {name: [column] for name, column in self.fields.items() if column}}
        levels = [column for column in self.category_levels if column]
        if levels:
            data["category"] = {"columns": levels}
        elif self.category_path:
            data["category"] = {"path": [self.category_path]}
        if self.source:
            data["source"] = self.source
        return data

    def mapping(self) -> ImportMapping:
        """The ImportMapping this choice makes; raises ValidationError naming what is missing."""
        try:
            return ImportMapping.from_dict(self.to_dict())
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    def toml_text(self) -> str:
        """The mapping file an import takes (strings written as JSON strings, which TOML reads the same)."""
        data = self.to_dict()
        lines = [f"source = {json.dumps(data['source'])}"] if "source" in data else []
        for table in ("fields", "category"):
            if table in data:
                lines.append(f"\n[{table}]")
                lines += [f"{key} = {json.dumps(value)}" for key, value in data[table].items()]
        return "\n".join(lines) + "\n"


def mapping_choice_default(*, columns: list[str], source: str = "") -> MappingChoice:
    """The importer's own defaults: per product field, the first default column name the file has (any case)."""
    by_lower = {column.lower(): column for column in reversed(columns)}

    def first(candidates: tuple[str, ...]) -> str:
        return next((by_lower[name.lower()] for name in candidates if name.lower() in by_lower), "")

    return MappingChoice(fields={name: first(DEFAULT_FIELDS.get(name, ())) for name in PRODUCT_FIELDS},
                         category_path=first(DEFAULT_CATEGORY_PATH), source=source)


# --- the preview -------------------------------------------------------------------------------------------------


@dataclass
class FeedPreview:
    """What importing the feed with a mapping would give: columns, the first products, the category paths."""

    name: str
    file_format: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # the first PREVIEW_ROWS products' values, with their line
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason) of the first rejected rows
    rows_read: int = 0
    rows_rejected: int = 0
    truncated: bool = False  # the file has more rows than were read for the counts
    path_counts: Counter = field(default_factory=Counter)
    paths_matching: int = 0  # distinct paths the current taxonomy matches (the source's feed category map)
    products_matching: int = 0
    error: str = ""  # the import as a whole would fail: why

    @property
    def products(self) -> int:
        return sum(self.path_counts.values())

    @property
    def products_with_path(self) -> int:
        return sum(count for path, count in self.path_counts.items() if path)

    @property
    def paths_distinct(self) -> int:
        return sum(1 for path in self.path_counts if path)

    @property
    def top_paths(self) -> list[tuple[str, int]]:
        return [(path, count) for path, count in self.path_counts.most_common(TOP_PATHS + 1) if path][:TOP_PATHS]


def feed_columns_read(*, path: Path, file_format: str | None = None) -> list[str]:
    """Return a feed's columns: a CSV's header, or the keys of a JSON lines file's first records in order.

    Raises ImportFileError when the file cannot be read at all.
    """
    file_format = file_format or file_format_detect(path)
    with FeedFile(path) as feed:
        if file_format == "jsonl":
            columns: dict[str, None] = {}
            for row in itertools.islice(jsonl_rows(feed.lines()), COLUMN_SCAN_ROWS):
                columns.update(dict.fromkeys(key for key in (row.record or {}) if isinstance(key, str)))
            return list(columns)
        sample = feed.stream.peek(32 * 1024)[:32 * 1024] if hasattr(feed.stream, "peek") else b""
        delimiter = normalise.csv_delimiter_sniff(sample.decode("utf-8", "replace"))
        headers: list[list[str]] = []
        rows = csv_rows(feed.lines(), delimiter=delimiter, header_check=headers.append)
        next(rows, None)
        return [column for column in (headers[0] if headers else []) if column != "_raw_line"]


def feed_preview_build(*, path: Path, choice: MappingChoice, source: str = "") -> FeedPreview:
    """Read the feed as an import with `choice` would: the first rows as products, then up to PREVIEW_SCAN_ROWS
    rows' category paths, matched against the taxonomy with `source`'s feed category map."""
    preview = FeedPreview(name=path.name)
    try:
        preview.file_format = file_format_detect(path)
        preview.columns = feed_columns_read(path=path, file_format=preview.file_format)
        mapping = choice.mapping()
    except ImportFileError as exc:
        preview.error = str(exc)
        return preview
    except ValidationError as exc:
        preview.error = " ".join(exc.messages)
        return preview
    by_id: dict[str, str] = {}
    try:
        with FeedFile(path) as feed:
            rows = FeedRows(feed, file_format=preview.file_format, mapping=mapping)
            for row in rows:
                if preview.rows_read >= PREVIEW_SCAN_ROWS:
                    preview.truncated = True
                    break
                preview.rows_read += 1
                draft = row.rejected or product_draft_build(record=row.record, line=row.line, mapping=mapping,
                                                            reader=rows.field_reader)
                if isinstance(draft, str):
                    preview.rows_rejected += 1
                    if len(preview.rejected) < PREVIEW_ROWS:
                        preview.rejected.append((row.line, draft))
                    continue
                by_id[draft.values["external_id"]] = draft.values["category_path"]
                if len(preview.rows) < PREVIEW_ROWS:
                    preview.rows.append({"line": row.line, **draft.values, "image": draft.image_ref})
    except ImportFileError as exc:
        preview.error = str(exc)
    preview.path_counts = Counter(by_id.values())
    matches = FeedCategoryResolver(source=source or choice.source or path.stem).resolve(
        [path for path in preview.path_counts if path])
    matched = [path for path, match in matches.items() if match.category_id]
    preview.paths_matching = len(matched)
    preview.products_matching = sum(preview.path_counts[path] for path in matched)
    return preview


# --- the steps -----------------------------------------------------------------------------------------------------


@transaction.atomic
def onboarding_import_submit(*, token: str, choice: MappingChoice, user: AbstractBaseUser | None) -> ImportRun:
    """Queue the product import of the uploaded feed with the chosen mapping; the kept upload is then deleted.

    Raises ValidationError for an unknown token, a mapping without the required columns or a file the import
    cannot take.
    """
    path = onboarding_upload_path(token=token)
    if path is None:
        raise ValidationError({"upload": "the uploaded feed is gone (imported already, or older than a week): "
                                         "upload it again"})
    choice.mapping()  # the same check the import makes, before anything is queued
    mapping_file = SimpleUploadedFile("mapping.toml", choice.toml_text().encode("utf-8"))
    with path.open("rb") as handle:
        run = import_job_submit(kind=ImportKind.PRODUCTS, uploaded_file=File(handle, name=path.name), user=user,
                                source=choice.source or path.stem, mapping_file=mapping_file)
    transaction.on_commit(lambda: shutil.rmtree(path.parent, ignore_errors=True))
    return run


@dataclass(frozen=True)
class RulesResult:
    rules_written: int
    rules_active: int
    rule_labels_created: int
    products_labelled: int
    feed_products_remapped: int


def onboarding_rules_bootstrap(*, source: str) -> RulesResult:
    """Match the source's feed paths to the taxonomy, write one keyword rule per exclusive category from its
    name and apply every active rule to the catalogue (all synchronous: meant for a first, small catalogue)."""
    remapped = feed_categories_remap(source=source).products_remapped if source else 0
    written = rules_bootstrap()
    applied = rules_apply()
    return RulesResult(rules_written=written, rules_active=applied.rules_active,
                       rule_labels_created=applied.labels_created, products_labelled=applied.products_labelled,
                       feed_products_remapped=remapped)


def onboarding_feed_categories_match(*, source: str) -> int:
    """Map the source's products' feed paths onto the taxonomy now in place; return how many products moved."""
    return feed_categories_remap(source=source).products_remapped


@transaction.atomic
def onboarding_train_start(*, user: AbstractBaseUser | None, architecture: str = FIRST_MODEL["architecture"],
                           epochs: int = FIRST_MODEL["epochs"], weak_targets: bool = True) -> TrainRun:
    """Queue the first model: the exclusive and rule heads, learning from the rules' and the feed's categories."""
    return train_run_create(architecture=architecture, objectives=FIRST_MODEL["objectives"],
                            params={"epochs": epochs, "weak_targets": weak_targets}, user=user, trigger="onboarding")


@transaction.atomic
def onboarding_round_open(*, user: AbstractBaseUser | None, batch_size: int = FIRST_ROUND["batch_size"],
                          train_run: TrainRun | None = None) -> LabellingRound:
    """Open the first labelling round (margin 80 % + random 20 %), retraining like the first model when it closes."""
    architecture = train_run.architecture if train_run else FIRST_MODEL["architecture"]
    training = {"epochs": int(train_run.params.get("epochs", FIRST_MODEL["epochs"]))} if train_run else {}
    return labelling_round_create(strategy_mix=FIRST_ROUND["strategy_mix"], batch_size=batch_size,
                                  objectives=FIRST_MODEL["objectives"], architecture=architecture,
                                  options={"training": training} if training else {}, user=user)
