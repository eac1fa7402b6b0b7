"""Product imports: stream a JSON lines or CSV feed into Product rows, with a per-row report (ImportRowIssue).

The same entry points serve the management commands, a Celery task, the admin or an API:

    run = import_run_create(kind=ImportKind.PRODUCTS, file_name=str(path), source="myntra",
                            options={"mapping": mapping.to_dict(), "images_dir": "/data/images"})
    import_run_execute(import_run_id=run.id)        # or products_import(import_run=run, path=..., ...)

Rows are streamed (one line in memory at a time, upserts in batches of settings.IMPORT_BATCH_SIZE), so
memory stays flat whatever the file's size. A row is never silently lost: it is created, updated, or
recorded as an ImportRowIssue (rejected / repaired / warning) with its line number, reason and raw text.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import itertools
import json
import logging
import math
import re
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DataError, IntegrityError, connection, reset_queries, transaction
from django.db.models import Count
from django.db.models.functions import Lower
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from labelapp import normalise
from labelapp.models import (
    Category,
    CategorySource,
    ImportKind,
    ImportRowIssue,
    ImportRun,
    ImportStatus,
    Product,
    RowOutcome,
    split_for,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called as progress(bytes_done, bytes_total) while a file is read."""

MAX_LINE_BYTES = 8 * 1024 * 1024
# A CSV record may span lines (a quoted newline); past this many, an unbalanced quote is swallowing the file.
MAX_RECORD_LINES = 200
ISSUE_RAW_MAX_CHARS = 10_000
IMAGE_WORKERS = 8
EXTERNAL_ID_MAX_LENGTH = Product._meta.get_field("external_id").max_length


class ImportFileError(Exception):
    """The file as a whole cannot be imported (unreadable, wrong encoding, no usable header…)."""


# --------------------------------------------------------------------------------------------------------------
# Runs


def import_run_create(*, kind: str, file_name: str, source: str = "", options: dict | None = None,
                      user: AbstractBaseUser | None = None) -> ImportRun:
    """Create a queued ImportRun for a file; a command, task, admin action or API then executes it."""
    run = ImportRun(kind=kind, file_name=file_name, source=source, options=options or {}, created_by=user)
    run.full_clean()
    run.save()
    return run


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
        # Imported here: taxonomy.py builds on this module's run and file helpers.
        from labelapp.services.taxonomy import taxonomy_import

        return taxonomy_import(
            import_run=run,
            path=Path(run.file_name),
            file_format=options.get("format"),
            exclusive_path=Path(options["exclusive_file"]) if options.get("exclusive_file") else None,
            progress=progress,
        )
    if run.kind == ImportKind.RULES:
        from labelapp.services.rules import rules_import

        return rules_import(import_run=run, path=Path(run.file_name))
    raise ValueError(f"import kind {run.kind!r} is not executed by this service")


def import_run_start(*, import_run: ImportRun) -> bool:
    """Move a queued run to running; return False when another worker already took it (duplicate delivery)."""
    now = timezone.now()
    taken = ImportRun.objects.filter(pk=import_run.pk, status=ImportStatus.QUEUED).update(
        status=ImportStatus.RUNNING, started_at=now
    )
    import_run.refresh_from_db()
    return bool(taken)


def import_run_fail(*, import_run: ImportRun, error: str) -> None:
    """Mark a run failed with the reason; the batches it committed before stay as they are."""
    ImportRun.objects.filter(pk=import_run.pk).update(
        status=ImportStatus.FAILED, error=error[:10_000], finished_at=timezone.now()
    )
    import_run.refresh_from_db()


def import_run_succeed(*, import_run: ImportRun, counts: dict[str, int]) -> None:
    """Mark a run succeeded with its final counts."""
    ImportRun.objects.filter(pk=import_run.pk).update(
        status=ImportStatus.SUCCEEDED, finished_at=timezone.now(), **counts
    )
    import_run.refresh_from_db()


def import_run_issues_url(*, import_run: ImportRun) -> str:
    """Return the admin URL listing every row issue of a run."""
    return f"/admin/labelapp/importrowissue/?import_run__id__exact={import_run.pk}"


class RowIssueBuffer:
    """Collect ImportRowIssue rows and write them with bulk_create, inside the caller's batch transaction."""

    def __init__(self, *, import_run: ImportRun):
        self.import_run = import_run
        self.pending: list[ImportRowIssue] = []

    def add(self, *, line: int, outcome: str, reason: str, raw: str = "") -> None:
        self.pending.append(ImportRowIssue(
            import_run=self.import_run, line=max(line, 0), outcome=outcome, reason=reason[:1000],
            raw=_raw_clip(raw),
        ))

    def __len__(self) -> int:
        return len(self.pending)

    def flush(self) -> None:
        if self.pending:
            ImportRowIssue.objects.bulk_create(self.pending)
            self.pending = []


def _raw_clip(text: str) -> str:
    text = text.replace("\x00", "\\x00")
    if len(text) > ISSUE_RAW_MAX_CHARS:
        return text[:ISSUE_RAW_MAX_CHARS] + f"… [{len(text) - ISSUE_RAW_MAX_CHARS} more characters]"
    return text


# --------------------------------------------------------------------------------------------------------------
# Reading lines: bytes in, decoded lines out, with what is wrong with each line rather than an exception


@dataclass(slots=True)
class FileLine:
    number: int
    text: str  # decoded, line ending kept (the csv module needs it inside quoted fields)
    problem: str = ""  # why the line cannot be trusted: undecodable bytes, NUL bytes, too long


class FeedFile:
    """A feed file opened for streaming (plain or .gz), with its size for progress reporting."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise ImportFileError(f"cannot open {path}: {exc.strerror or exc}") from exc
        self.size = path.stat().st_size
        self.stream: IO[bytes] = gzip.GzipFile(fileobj=self._raw) if path.suffix == ".gz" else self._raw

    def position(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self.stream.close()
        self._raw.close()

    def __enter__(self) -> FeedFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def lines(self, *, encoding: str = "utf-8") -> Iterator[FileLine]:
        """Yield the file's lines decoded one by one; a bad line is flagged, never fatal."""
        try:
            head = self.stream.peek(4)[:4] if hasattr(self.stream, "peek") else b""
        except (OSError, EOFError) as exc:
            raise ImportFileError(f"cannot read {self.path}: {exc}") from exc
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ImportFileError("the file is UTF-16 encoded; save it as UTF-8 (or CSV UTF-8 in Excel)")
        decoder = codecs.getdecoder(encoding)
        number = 0
        while True:
            try:
                raw = self.stream.readline(MAX_LINE_BYTES + 1)
            except (OSError, EOFError, zlib.error) as exc:
                raise ImportFileError(f"cannot read {self.path} after line {number}: {exc}") from exc
            if not raw:
                return
            number += 1
            problem = ""
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := self.stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                yield FileLine(number, raw[:2000].decode(encoding, "replace") + "…",
                               f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")
                continue
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = decoder(raw)[0]
            except UnicodeDecodeError as exc:
                text = raw.decode(encoding, "replace")
                problem = f"undecodable bytes for {encoding} at byte {exc.start}"
            if "\x00" in text:
                text = text.replace("\x00", "")
                problem = problem or "NUL bytes in the line"
            yield FileLine(number, text, problem)


# --------------------------------------------------------------------------------------------------------------
# Mapping: which input field feeds which product field


PRODUCT_FIELDS = ("external_id", "title", "description", "brand", "gender", "size", "price", "currency", "image")

DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "external_id": ("id", "sku", "product_id", "productid", "item_id", "offer_id", "external_id"),
    "title": ("title", "name", "product_name", "productdisplayname"),
    "description": ("description", "long_description", "short_description"),
    "brand": ("brand", "manufacturer"),
    "gender": ("gender",),
    "size": ("size",),
    "price": ("price", "sale_price", "current_price"),
    "currency": ("currency", "currency_code"),
    "image": ("image", "image_url", "image_link", "imageurl", "image_path"),
}
DEFAULT_CATEGORY_PATH = ("category_path", "category", "product_type", "categories", "product_category")

_MAPPING_TOP_KEYS = {"source", "format", "encoding", "csv", "fields", "category"}


def _names(value: Any, *, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{where} must be a column name or a non-empty list of column names")
    return tuple(value)


@dataclass(frozen=True)
class ImportMapping:
    """How one source's feed maps onto Product; see demo/mappings/myntra.toml for the file form."""

    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    category_columns: tuple[str, ...] = ()
    category_path: tuple[str, ...] = ()
    csv_delimiter: str | None = None
    overflow_into: str | None = None
    encoding: str = "utf-8"
    source: str = ""
    file_format: str | None = None

    @classmethod
    def default(cls) -> ImportMapping:
        """The mapping used without a mapping file: common column names, matched case-insensitively."""
        return cls(fields=dict(DEFAULT_FIELDS), category_path=DEFAULT_CATEGORY_PATH)

    @classmethod
    def from_dict(cls, data: dict) -> ImportMapping:
        """Build a mapping from its TOML form; raise ValueError naming what is wrong."""
        unknown = set(data) - _MAPPING_TOP_KEYS
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} (expected {sorted(_MAPPING_TOP_KEYS)})")
        fields_table = dict(data.get("fields") or {})
        attributes_value = fields_table.pop("attributes", {})
        unknown = set(fields_table) - set(PRODUCT_FIELDS)
        if unknown:
            raise ValueError(f"[fields]: unknown product fields {sorted(unknown)} (expected {list(PRODUCT_FIELDS)} "
                             "or attributes)")
        fields = {name: _names(value, where=f"[fields] {name}") for name, value in fields_table.items()}
        for required in ("external_id", "title"):
            if required not in fields:
                raise ValueError(f"[fields] must name the {required} column")
        if isinstance(attributes_value, list):
            attributes = {name: (name,) for name in _names(attributes_value, where="[fields] attributes")}
        elif isinstance(attributes_value, dict):
            attributes = {key: _names(value, where=f"[fields] attributes.{key}")
                          for key, value in attributes_value.items()}
        else:
            raise ValueError("[fields] attributes must be a list of columns or a table {key = column}")
        category = dict(data.get("category") or {})
        unknown = set(category) - {"columns", "path"}
        if unknown:
            raise ValueError(f"[category]: unknown keys {sorted(unknown)} (expected columns or path)")
        if "columns" in category and "path" in category:
            raise ValueError("[category]: give either columns (one per level) or path (a whole path), not both")
        csv_table = dict(data.get("csv") or {})
        unknown = set(csv_table) - {"delimiter", "overflow_into"}
        if unknown:
            raise ValueError(f"[csv]: unknown keys {sorted(unknown)} (expected delimiter, overflow_into)")
        delimiter = csv_table.get("delimiter")
        if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
            raise ValueError("[csv] delimiter must be one character")
        encoding = data.get("encoding", "utf-8")
        try:
            codec = codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise ValueError(f"unknown encoding {encoding!r}") from None
        if codec.name.startswith(("utf-16", "utf-32")):
            raise ValueError(f"encoding {encoding!r} is not supported: convert the file to UTF-8")
        file_format = data.get("format")
        if file_format not in (None, "jsonl", "csv"):
            raise ValueError(f"format must be jsonl or csv, got {file_format!r}")
        return cls(
            fields=fields,
            attributes=attributes,
            category_columns=_names(category["columns"], where="[category] columns") if "columns" in category else (),
            category_path=_names(category["path"], where="[category] path") if "path" in category else (),
            csv_delimiter=delimiter,
            overflow_into=csv_table.get("overflow_into"),
            encoding=codec.name,
            source=str(data.get("source", "")),
            file_format=file_format,
        )

    def to_dict(self) -> dict:
        """Return the TOML-shaped dict (stored in ImportRun.options so a run says how it read its file)."""
        data: dict[str, Any] = {"encoding": self.encoding, "fields": {k: list(v) for k, v in self.fields.items()}}
        data["fields"]["attributes"] = {k: list(v) for k, v in self.attributes.items()}
        if self.source:
            data["source"] = self.source
        if self.file_format:
            data["format"] = self.file_format
        if self.category_columns:
            data["category"] = {"columns": list(self.category_columns)}
        elif self.category_path:
            data["category"] = {"path": list(self.category_path)}
        csv_table = {k: v for k, v in (("delimiter", self.csv_delimiter), ("overflow_into", self.overflow_into)) if v}
        if csv_table:
            data["csv"] = csv_table
        return data


def mapping_load(*, path: Path) -> ImportMapping:
    """Read a mapping file (TOML); raise ValueError with the file name and what is wrong."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ValueError(f"cannot read mapping {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"mapping {path} is not valid TOML: {exc}") from exc
    try:
        return ImportMapping.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"mapping {path}: {exc}") from exc


def file_format_detect(path: Path) -> str:
    """Return 'jsonl' or 'csv' from a file's extension (a trailing .gz is looked through)."""
    suffixes = [suffix.lower() for suffix in path.suffixes if suffix.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in {".jsonl", ".ndjson", ".json", ".jl"}:
        return "jsonl"
    if suffix in {".csv", ".tsv", ".txt", ".psv"}:
        return "csv"
    raise ImportFileError(f"cannot tell the format of {path.name} from its extension: give the format "
                          "(jsonl or csv)")


# --------------------------------------------------------------------------------------------------------------
# Rows: records out of lines, or the reason a line is not a record


@dataclass(slots=True)
class FeedRow:
    line: int
    raw_text: str
    record: dict | None = None
    rejected: str = ""  # why the row is rejected
    repaired: str = ""  # how the row was repaired


_JSON_TYPE_NAMES = {"list": "an array", "str": "a string", "int": "a number", "float": "a number",
                    "bool": "a boolean", "NoneType": "null"}
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _json_constant_reject(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _json_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # 1e400: Postgres JSONB has no infinity
        raise ValueError(f"number {text} out of range")
    return value


def jsonl_rows(lines: Iterable[FileLine]) -> Iterator[FeedRow]:
    """Yield one FeedRow per non-blank line of a JSON lines file."""
    for line in lines:
        text = line.text.strip()
        if not text:
            continue
        if line.problem:
            yield FeedRow(line.number, text, rejected=line.problem)
            continue
        try:
            record = json.loads(text, parse_constant=_json_constant_reject, parse_float=_json_float)
        except (ValueError, RecursionError) as exc:
            yield FeedRow(line.number, text, rejected=f"malformed JSON: {exc}")
            continue
        if not isinstance(record, dict):
            kind = _JSON_TYPE_NAMES.get(type(record).__name__, type(record).__name__)
            yield FeedRow(line.number, text, rejected=f"expected a JSON object, found {kind}")
            continue
        # Postgres JSONB and text refuse NUL characters and lone surrogates: catch them on the row, not the batch.
        if "\\u0000" in text:
            yield FeedRow(line.number, text, rejected="NUL character (\\u0000) in the record")
            continue
        if _SURROGATE_ESCAPE_RE.search(text):
            try:
                json.dumps(record, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                yield FeedRow(line.number, text, rejected="invalid unicode escape (lone surrogate) in the record")
                continue
        yield FeedRow(line.number, text, record=record)


class _RunawayRecord(Exception):
    pass


class _RecordLines:
    """Feed lines to csv.reader, remembering which lines the current record took; lines can be pushed back."""

    def __init__(self, lines: Iterator[FileLine]):
        self._lines = lines
        self._pending: deque[FileLine] = deque()
        self.taken: list[FileLine] = []

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = self._pending.popleft() if self._pending else next(self._lines)
        self.taken.append(line)
        if len(self.taken) > MAX_RECORD_LINES:
            raise _RunawayRecord
        return line.text

    def push_back(self, lines: list[FileLine]) -> None:
        self._pending.extendleft(reversed(lines))


def _csv_header(names: list[str]) -> list[str]:
    header, seen = [], set()
    for index, name in enumerate(names, start=1):
        name = normalise.text_clean(name) or f"column_{index}"
        unique, suffix = name, 2
        while unique in seen:
            unique, suffix = f"{name}_{suffix}", suffix + 1
        seen.add(unique)
        header.append(unique)
    return header


def csv_rows(lines: Iterator[FileLine], *, delimiter: str, overflow_into: str | None = None,
             header_check: Callable[[list[str]], None] | None = None) -> Iterator[FeedRow]:
    """Yield one FeedRow per CSV record after the header, repairing or rejecting wrong field counts.

    A row with too many fields is repaired by joining the overflow back into the `overflow_into` column
    (an unquoted delimiter inside that column's text). A multi-line record with the wrong field count is an
    unbalanced quote: its first line is rejected and the lines after it are read again.
    `header_check(header)` may raise ImportFileError before any row is read.
    """
    feeder = _RecordLines(iter(lines))
    reader = csv.reader(feeder, delimiter=delimiter, quotechar='"', doublequote=True, skipinitialspace=False,
                        strict=False)
    header: list[str] | None = None
    overflow_index: int | None = None

    def reject_first_and_reread(reason: str) -> FeedRow:
        nonlocal reader
        first, rest = feeder.taken[0], feeder.taken[1:]
        feeder.push_back(rest)
        reader = csv.reader(feeder, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
        return FeedRow(first.number, first.text.rstrip("\r\n"), rejected=reason)

    while True:
        feeder.taken = []
        try:
            fields = next(reader)
        except StopIteration:
            return
        except _RunawayRecord:
            yield reject_first_and_reread(f"unbalanced quote: the record runs on for more than "
                                          f"{MAX_RECORD_LINES} lines")
            continue
        except csv.Error as exc:
            yield reject_first_and_reread(f"unreadable CSV: {exc}")
            continue
        taken = feeder.taken
        raw_text = "".join(line.text for line in taken).rstrip("\r\n")
        if not any(value.strip() for value in fields):
            continue
        if header is None:
            header = _csv_header(fields)
            if header_check is not None:
                header_check(header)
            if overflow_into is not None:
                if overflow_into not in header:
                    raise ImportFileError(f"overflow_into column {overflow_into!r} is not in the header "
                                          f"({', '.join(header)})")
                overflow_index = header.index(overflow_into)
            continue
        problem = next((line.problem for line in taken if line.problem), "")
        if problem:
            yield FeedRow(taken[0].number, raw_text, rejected=problem)
            continue
        expected, found = len(header), len(fields)
        repaired = ""
        if found != expected and len(taken) > 1:
            yield reject_first_and_reread(f"expected {expected} fields, found {found} in a record spanning "
                                          f"{len(taken)} lines (unbalanced quote?)")
            continue
        if found > expected:
            extra = found - expected
            if not any(value.strip() for value in fields[expected:]):
                fields = fields[:expected]
                repaired = f"expected {expected} fields, found {found}: dropped {extra} empty trailing fields"
            elif overflow_index is not None:
                joined = delimiter.join(fields[overflow_index:overflow_index + extra + 1])
                fields = [*fields[:overflow_index], joined, *fields[overflow_index + extra + 1:]]
                repaired = (f"expected {expected} fields, found {found}: joined {extra + 1} fields back into "
                            f"{overflow_into!r}")
            else:
                yield FeedRow(taken[0].number, raw_text, rejected=f"expected {expected} fields, found {found}")
                continue
        elif found < expected:
            yield FeedRow(taken[0].number, raw_text, rejected=f"expected {expected} fields, found {found}")
            continue
        record = dict(zip(header, fields, strict=True))
        if repaired:
            record["_raw_line"] = raw_text
        yield FeedRow(taken[0].number, raw_text, record=record, repaired=repaired)


# --------------------------------------------------------------------------------------------------------------
# Records to product values


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict, tuple)):
        return not value
    return False


class _FieldReader:
    """Read mapped fields from a record: exact names first, then dotted paths (nested JSON), then any case."""

    def __init__(self, header: list[str] | None = None):
        # A CSV header is fixed: resolve names against it once instead of per row.
        self._header_lower = {name.lower(): name for name in reversed(header)} if header else None

    def resolve(self, name: str) -> str | None:
        if self._header_lower is None:
            return name
        return self._header_lower.get(name.lower())

    def first(self, record: dict, candidates: tuple[str, ...]) -> Any:
        lowered: dict[str, str] | None = None
        for name in candidates:
            if name in record:
                value = record[name]
            elif self._header_lower is not None:
                actual = self._header_lower.get(name.lower())
                value = record.get(actual) if actual else None
            else:
                value = _dotted_get(record, name) if "." in name else None
                if value is None:
                    if lowered is None:
                        lowered = {key.lower(): key for key in record if isinstance(key, str)}
                    actual = lowered.get(name.lower())
                    value = record.get(actual) if actual else None
            if not _is_empty(value):
                return value
        return None


def _dotted_get(record: dict, name: str) -> Any:
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(slots=True)
class ProductDraft:
    line: int
    values: dict[str, Any]
    image_ref: str
    warnings: list[str]
    raw_text: str = ""
    image: ImageOutcome | None = None  # decided once, before the batch is written


_FIELD_LIMITS = {name: Product._meta.get_field(name).max_length
                 for name in ("brand", "gender", "size", "category_path", "image_ref")}


def _scalar_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = next((item for item in value if not _is_empty(item)), "")
    if isinstance(value, dict):
        return ""
    return normalise.text_clean(value)


def product_draft_build(*, record: dict, line: int, mapping: ImportMapping, reader: _FieldReader,
                        raw_text: str = "") -> ProductDraft | str:
    """Return a row's normalised product values, or the reason the row is rejected."""
    fields = mapping.fields
    external_id = normalise.external_id_clean(reader.first(record, fields.get("external_id", ())))
    if not external_id:
        return f"missing external id (looked in {', '.join(fields.get('external_id', ()))})"
    if len(external_id) > EXTERNAL_ID_MAX_LENGTH:
        return f"external id longer than {EXTERNAL_ID_MAX_LENGTH} characters ({len(external_id)})"
    title = _scalar_text(reader.first(record, fields.get("title", ())))
    if not title:
        return f"missing title (looked in {', '.join(fields.get('title', ()))})"
    warnings: list[str] = []

    def text(name: str) -> str:
        value = _scalar_text(reader.first(record, fields[name])) if name in fields else ""
        limit = _FIELD_LIMITS.get(name)
        if limit and len(value) > limit:
            warnings.append(f"{name} longer than {limit} characters: cut")
            value = value[:limit]
        return value

    if mapping.category_columns:
        names = [_scalar_text(reader.first(record, (column,))) for column in mapping.category_columns]
        category_path = normalise.PATH_SEPARATOR.join(name for name in names if name)
    else:
        category_path = normalise.category_path_normalise(reader.first(record, mapping.category_path))
    if len(category_path) > _FIELD_LIMITS["category_path"]:
        warnings.append(f"category path longer than {_FIELD_LIMITS['category_path']} characters: cut")
        category_path = category_path[: _FIELD_LIMITS["category_path"]]

    price_value = reader.first(record, fields["price"]) if "price" in fields else None
    price_currency = ""
    if isinstance(price_value, dict):  # {"value": "12.99", "currency": "EUR"} (Content API style)
        price_currency = price_value.get("currency") or price_value.get("currencyCode") or ""
        price_value = price_value.get("value", price_value.get("amount"))
    try:
        price = normalise.price_parse(price_value)
    except ValueError as exc:
        warnings.append(f"{exc}: price left empty")
        price = normalise.Price(None, "")
    currency = price.currency
    currency_value = reader.first(record, fields["currency"]) if "currency" in fields else None
    if _is_empty(currency_value):
        currency_value = price_currency
    if not _is_empty(currency_value):
        try:
            currency = normalise.currency_code(currency_value) or currency
        except ValueError as exc:
            warnings.append(f"{exc}: currency left empty")

    attributes: dict[str, Any] = {}
    for key, candidates in mapping.attributes.items():
        value = reader.first(record, candidates)
        if isinstance(value, str):
            value = normalise.text_clean(value)
        elif isinstance(value, list):
            value = [normalise.text_clean(item) if isinstance(item, str) else item for item in value]
        if not _is_empty(value):
            attributes[key] = value

    image_ref = ""
    if "image" in fields:
        image_value = reader.first(record, fields["image"])
        if isinstance(image_value, (list, tuple)):
            image_value = next((item for item in image_value if not _is_empty(item)), None)
        if isinstance(image_value, (str, int)):
            image_ref = str(image_value).strip()
        if len(image_ref) > _FIELD_LIMITS["image_ref"]:
            warnings.append(f"image reference longer than {_FIELD_LIMITS['image_ref']} characters: ignored")
            image_ref = ""

    return ProductDraft(
        line=line,
        values={
            "external_id": external_id,
            "title": title,
            "description": text("description"),
            "brand": text("brand"),
            "gender": text("gender"),
            "size": text("size"),
            "category_path": category_path,
            "price": price.amount,
            "currency": currency,
            "attributes": attributes,
            "raw": record,
        },
        image_ref=image_ref,
        warnings=warnings,
        raw_text=raw_text,
    )


# --------------------------------------------------------------------------------------------------------------
# Feed categories


class _FeedCategoryResolver:
    """Map normalised feed paths (case-insensitive) or taxonomy ids to Category rows, cached per import."""

    CACHE_LIMIT = 50_000

    def __init__(self):
        self._cache: dict[str, tuple[int, int | None, int | None] | None] = {}

    def resolve(self, paths: Iterable[str]) -> dict[str, tuple[int, int | None, int | None] | None]:
        keys = {path.lower() for path in paths if path}
        missing = keys - self._cache.keys()
        if missing:
            if len(self._cache) > self.CACHE_LIMIT:
                self._cache.clear()
            found: dict[str, tuple[int, int | None, int | None] | None] = dict.fromkeys(missing)
            by_path = (Category.objects.annotate(path_lower=Lower("full_path"))
                       .filter(path_lower__in=missing)
                       .values_list("path_lower", "id", "level2_id", "level3_id"))
            for path_lower, *ids in by_path:
                found[path_lower] = tuple(ids)
            # A Google-style feed names its category by taxonomy id ('1604') rather than by path.
            numeric = [key for key in missing if key.isdigit() and found[key] is None]
            if numeric:
                for external_id, *ids in Category.objects.filter(external_id__in=numeric).values_list(
                        "external_id", "id", "level2_id", "level3_id"):
                    found[external_id] = tuple(ids)
            self._cache.update(found)
        return {key: self._cache.get(key) for key in keys}


# --------------------------------------------------------------------------------------------------------------
# Images


IMAGE_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


class _ImageError(Exception):
    pass


@dataclass(slots=True)
class ImageOutcome:
    image: str  # storage name to keep on the product ('' for none)
    image_ref: str
    error: str = ""
    stored: bool = False
    failed: bool = False


def _safe_name(value: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", value).strip("._")[:100] or "_"
    if safe != value:
        safe = f"{safe}-{hashlib.sha1(value.encode()).hexdigest()[:8]}"
    return safe


def _image_check(handle: IO[bytes]) -> str:
    """Return the file extension for an image's format from its header (no full decode)."""
    try:
        with Image.open(handle) as image:
            image_format, (width, height) = image.format, image.size
    except Image.DecompressionBombError as exc:
        raise _ImageError(f"image too large: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _ImageError(f"not an image ({type(exc).__name__})") from None
    if image_format not in IMAGE_FORMATS:
        raise _ImageError(f"unsupported image format {image_format}")
    if not width or not height or (Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS):
        raise _ImageError(f"unusable image size {width}x{height}")
    handle.seek(0)
    return IMAGE_FORMATS[image_format]


def _image_download(url: str, *, timeout: float, max_bytes: int) -> IO[bytes]:
    """Download an image into a temporary file, giving up past max_bytes or `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": "labelapp-import/1"})
    buffer = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - returned to the caller
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise _ImageError(f"image larger than {max_bytes} bytes ({length})")
            total = 0
            while chunk := response.read(64 * 1024):
                total += len(chunk)
                if total > max_bytes:
                    raise _ImageError(f"image larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise _ImageError(f"download timed out after {timeout:g}s")
                buffer.write(chunk)
    except urllib.error.HTTPError as exc:
        buffer.close()
        raise _ImageError(f"HTTP {exc.code} fetching image") from None
    except urllib.error.URLError as exc:
        buffer.close()
        if isinstance(exc.reason, TimeoutError):
            raise _ImageError(f"download timed out after {timeout:g}s") from None
        raise _ImageError(f"cannot fetch image: {exc.reason}") from None
    except TimeoutError:
        buffer.close()
        raise _ImageError(f"download timed out after {timeout:g}s") from None
    except (OSError, HTTPException, ValueError) as exc:
        buffer.close()
        raise _ImageError(f"cannot fetch image: {exc or type(exc).__name__}") from None
    except _ImageError:
        buffer.close()
        raise
    buffer.seek(0)
    return buffer


class ImageStore:
    """Copy product images from a folder or a URL into default_storage as products/<source>/<id>.<ext>."""

    def __init__(self, *, source: str, images_dir: Path | None, fetch_urls: bool):
        self.source = source
        self.images_dir = images_dir.resolve() if images_dir else None
        self.fetch_urls = fetch_urls
        self.timeout = settings.IMPORT_IMAGE_TIMEOUT_S
        self.max_bytes = settings.IMPORT_IMAGE_MAX_BYTES

    def wanted(self, *, image_ref: str) -> bool:
        """Whether anything is to be done for a row's image in this import."""
        if image_ref.lower().startswith(("http://", "https://")):
            return self.fetch_urls
        return "://" in image_ref or self.images_dir is not None  # another scheme is reported as an error

    def outcome(self, *, external_id: str, image_ref: str, current_image: str, current_ref: str) -> ImageOutcome:
        """Store a row's image if it is new or changed; never raises for a bad image."""
        keep = ImageOutcome(image=current_image, image_ref=image_ref or current_ref)
        try:
            if "://" in image_ref:
                scheme = image_ref.split("://", 1)[0].lower()
                if scheme not in ("http", "https"):
                    raise _ImageError(f"unsupported image URL scheme {scheme!r}")
                if not self.fetch_urls:
                    return keep
                # An image URL is taken as immutable: the same URL is not downloaded again.
                if image_ref == current_ref and current_image and default_storage.exists(current_image):
                    return keep
                with _image_download(image_ref, timeout=self.timeout, max_bytes=self.max_bytes) as handle:
                    name = self._store(handle, external_id=external_id, current_image=current_image)
                return ImageOutcome(image=name, image_ref=image_ref, stored=True)
            if self.images_dir is None:
                return keep
            path = self._local_path(external_id=external_id, image_ref=image_ref)
            if path is None:  # no image for this product in the folder: not a failure
                return ImageOutcome(image=current_image, image_ref=current_ref if current_image else "")
            ref = image_ref or str(path)
            size = path.stat().st_size
            if size > self.max_bytes:
                raise _ImageError(f"image larger than {self.max_bytes} bytes ({size})")
            if (ref == current_ref and current_image and default_storage.exists(current_image)
                    and default_storage.size(current_image) == size):
                return ImageOutcome(image=current_image, image_ref=ref)
            with open(path, "rb") as handle:
                name = self._store(handle, external_id=external_id, current_image=current_image)
            return ImageOutcome(image=name, image_ref=ref, stored=True)
        except _ImageError as exc:
            return ImageOutcome(image=current_image, image_ref=image_ref or current_ref, error=str(exc)[:500],
                                failed=True)
        except OSError as exc:
            return ImageOutcome(image=current_image, image_ref=image_ref or current_ref,
                                error=f"cannot read image: {exc.strerror or exc}"[:500], failed=True)

    def _local_path(self, *, external_id: str, image_ref: str) -> Path | None:
        if image_ref:
            path = (self.images_dir / image_ref).resolve()
            if not path.is_relative_to(self.images_dir):
                raise _ImageError(f"image path {image_ref!r} is outside the images folder")
            if not path.is_file():
                raise _ImageError(f"image file not found: {image_ref}")
            return path
        plain = external_id not in (".", "..") and "/" not in external_id and "\\" not in external_id
        for stem in dict.fromkeys([external_id] * plain + [_safe_name(external_id)]):
            for extension in IMAGE_EXTENSIONS:
                path = self.images_dir / f"{stem}{extension}"
                if path.is_file():
                    return path
        return None

    def _store(self, handle: IO[bytes], *, external_id: str, current_image: str) -> str:
        extension = _image_check(handle)
        name = f"products/{_safe_name(self.source)}/{_safe_name(external_id)}.{extension}"
        # Replace rather than let the storage invent 'name_x7Gq.jpg' beside the old copy.
        if default_storage.exists(name):
            default_storage.delete(name)
        saved = default_storage.save(name, File(handle, name=name))
        folder = f"products/{_safe_name(self.source)}/"
        if current_image and current_image != saved and current_image.startswith(folder):
            default_storage.delete(current_image)  # the old copy had another extension
        return saved


# --------------------------------------------------------------------------------------------------------------
# The product import


UPDATE_FIELDS = ["raw", "title", "description", "brand", "category_path", "gender", "size", "price", "currency",
                 "attributes", "image_ref", "image", "image_error", "feed_category", "import_run", "updated_at"]
CATEGORY_FIELDS = ["category", "category_source", "level2", "level3"]
# The feed category only fills a product whose category came from nothing stronger.
_FEED_MAY_SET = {CategorySource.FEED, CategorySource.NONE}


@dataclass
class _Counts:
    rows_total: int = 0
    rows_created: int = 0
    rows_updated: int = 0
    rows_rejected: int = 0
    rows_repaired: int = 0
    images_stored: int = 0
    images_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _ProductBatchWriter:
    """Upsert one batch of drafts: images first (no lock held), then one short transaction per batch."""

    def __init__(self, *, import_run: ImportRun, source: str, image_store: ImageStore, executor: ThreadPoolExecutor,
                 issues: RowIssueBuffer, counts: _Counts):
        self.import_run = import_run
        self.source = source
        self.image_store = image_store
        self.executor = executor
        self.issues = issues
        self.counts = counts
        self.categories = _FeedCategoryResolver()

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
        categories = self.categories.resolve(draft.values["category_path"] for draft in drafts.values())
        updated = 0
        with transaction.atomic():
            if ids:
                # Serialise batches of one source, so created/updated counts are exact under concurrency.
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                                   [f"labelapp.products_import:{self.source}"])
                # Locked, so a label submitted meanwhile waits for this batch instead of being overwritten.
                category_sources = dict(
                    Product.objects.select_for_update().filter(source=self.source, external_id__in=ids)
                    .values_list("external_id", "category_source")
                )
                updated = len(category_sources)
                may_set_category, keep_category = [], []
                for external_id, draft in drafts.items():
                    existing_source = category_sources.get(external_id)
                    (may_set_category if existing_source in (None, *_FEED_MAY_SET) else keep_category).append(
                        self._product(draft, categories))
                for products, update_fields in ((may_set_category, UPDATE_FIELDS + CATEGORY_FIELDS),
                                                (keep_category, UPDATE_FIELDS)):
                    if products:
                        Product.objects.bulk_create(products, update_conflicts=True,
                                                    unique_fields=["source", "external_id"],
                                                    update_fields=update_fields)
                    for product in products:
                        # Django's FieldFile points back at its instance; breaking the cycle frees the batch
                        # now rather than at the next full garbage collection.
                        product.__dict__.pop("image", None)
            ImportRowIssue.objects.bulk_create(self.issues.pending)
            counts = self.counts.as_dict()
            counts["rows_created"] += len(ids) - updated
            counts["rows_updated"] += updated
            ImportRun.objects.filter(pk=self.import_run.pk).update(**counts)
        # Only once committed: a refused batch is written again, in halves.
        self.issues.pending = []
        self.counts.rows_created += len(ids) - updated
        self.counts.rows_updated += updated

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

    def _product(self, draft: ProductDraft, categories: dict) -> Product:
        values, image = draft.values, draft.image
        feed = categories.get(values["category_path"].lower()) if values["category_path"] else None
        feed_id, level2_id, level3_id = feed or (None, None, None)
        return Product(
            source=self.source,
            split=split_for(source=self.source, external_id=values["external_id"]),
            image=image.image,
            image_ref=image.image_ref,
            image_error=image.error,
            feed_category_id=feed_id,
            category_id=feed_id,
            category_source=CategorySource.FEED if feed_id else CategorySource.NONE,
            level2_id=level2_id if feed_id else None,
            level3_id=level3_id if feed_id else None,
            import_run=self.import_run,
            **values,
        )


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
    counts = _Counts()
    issues = RowIssueBuffer(import_run=import_run)
    executor = ThreadPoolExecutor(max_workers=IMAGE_WORKERS, thread_name_prefix="import-images")
    writer = _ProductBatchWriter(
        import_run=import_run, source=source, executor=executor, issues=issues, counts=counts,
        image_store=ImageStore(source=source, images_dir=images_dir, fetch_urls=fetch_image_urls),
    )
    try:
        with FeedFile(path) as feed:
            rows = FeedRows(feed, file_format=file_format or mapping.file_format or file_format_detect(path),
                            mapping=mapping)
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


def _row_take(row: FeedRow, *, mapping: ImportMapping, reader: _FieldReader, issues: RowIssueBuffer,
              counts: _Counts) -> ProductDraft | None:
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


class FeedRows:
    """The rows of a feed file, with the field reader that fits them (for CSV, once the header is read)."""

    def __init__(self, feed: FeedFile, *, file_format: str, mapping: ImportMapping):
        if file_format not in ("jsonl", "csv"):
            raise ImportFileError(f"unknown format {file_format!r} (jsonl or csv)")
        self.feed = feed
        self.file_format = file_format
        self.mapping = mapping
        self.field_reader = _FieldReader()

    def __iter__(self) -> Iterator[FeedRow]:
        lines = self.feed.lines(encoding=self.mapping.encoding)
        if self.file_format == "jsonl":
            return jsonl_rows(lines)
        first = next(lines, None)
        if first is None:
            raise ImportFileError("the file is empty")
        delimiter = self.mapping.csv_delimiter or normalise.csv_delimiter_sniff(self._sample_after(first))
        return csv_rows(itertools.chain([first], lines), delimiter=delimiter,
                        overflow_into=self.mapping.overflow_into, header_check=self._header_check)

    def _header_check(self, header: list[str]) -> None:
        self.field_reader = reader = _FieldReader(header)
        for required in ("external_id", "title"):
            candidates = self.mapping.fields.get(required, ())
            if not any(reader.resolve(name) for name in candidates):
                raise ImportFileError(f"no {required} column: looked for {', '.join(candidates)} in the header "
                                      f"({', '.join(header)}); give a mapping file")
        missing = [name for name in self.mapping.category_columns if not reader.resolve(name)]
        if missing:
            raise ImportFileError(f"category columns {missing} are not in the header ({', '.join(header)})")

    def _sample_after(self, first: FileLine) -> str:
        """The header line plus what the buffered reader can show next, for the delimiter sniffer."""
        try:
            peeked = self.feed.stream.peek(32 * 1024)[: 32 * 1024] if hasattr(self.feed.stream, "peek") else b""
        except OSError:
            peeked = b""
        return first.text + peeked.decode(self.mapping.encoding, "replace")



# --------------------------------------------------------------------------------------------------------------
# Reporting


def import_run_report(*, import_run: ImportRun, issues_limit: int = 20) -> str:
    """Return a plain-text summary of a run: counts, the first row issues, and where to see them all."""
    run = import_run
    took = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else 0.0
    lines = [f"Import {run.pk} ({run.kind}{', source ' + run.source if run.source else ''}) {run.status} "
             f"in {took:.1f}s"]
    if run.error:
        lines.append(f"  error: {run.error}")
    lines.append(f"  rows: {run.rows_total:,} read, {run.rows_created:,} created, {run.rows_updated:,} updated, "
                 f"{run.rows_rejected:,} rejected, {run.rows_repaired:,} repaired")
    if run.kind == ImportKind.PRODUCTS:
        lines.append(f"  images: {run.images_stored:,} stored, {run.images_failed:,} failed")
    issue_count = run.row_issues.count()
    if issue_count:
        by_outcome = dict(run.row_issues.values_list("outcome").annotate(n=Count("id")).order_by())
        lines.append("  issues: " + ", ".join(f"{by_outcome[outcome]:,} {outcome}" for outcome in
                                               RowOutcome.values if outcome in by_outcome))
        for issue in run.row_issues.order_by("line", "id")[:issues_limit]:
            lines.append(f"    line {issue.line:>7}  {issue.outcome:<8}  {issue.reason}")
        if issue_count > issues_limit:
            lines.append(f"    … and {issue_count - issues_limit:,} more")
        lines.append(f"  all issues: {import_run_issues_url(import_run=run)} (admin), or "
                     f"ImportRowIssue.objects.filter(import_run_id={run.pk})")
    return "\n".join(lines)
