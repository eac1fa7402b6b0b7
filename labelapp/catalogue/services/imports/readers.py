"""Feed rows: records out of decoded lines (JSON lines or CSV), or the reason a line is not a record."""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from labelapp.catalogue import normalise
from labelapp.catalogue.services.imports.drafts import FieldReader
from labelapp.catalogue.services.imports.files import FeedFile, FileLine, ImportFileError
from labelapp.catalogue.services.imports.mapping import ImportMapping

# A CSV record may span lines (a quoted newline); past this many, an unbalanced quote is swallowing the file.
MAX_RECORD_LINES = 200


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
            header, overflow_index = _csv_header_read(fields, overflow_into=overflow_into, header_check=header_check)
            continue
        problem = next((line.problem for line in taken if line.problem), "")
        if problem:
            yield FeedRow(taken[0].number, raw_text, rejected=problem)
            continue
        expected, found = len(header), len(fields)
        if found != expected and len(taken) > 1:
            yield reject_first_and_reread(f"expected {expected} fields, found {found} in a record spanning "
                                          f"{len(taken)} lines (unbalanced quote?)")
            continue
        fields, repaired, rejected = _csv_fields_fit(fields, expected=expected, delimiter=delimiter,
                                                     overflow_index=overflow_index, overflow_into=overflow_into)
        if rejected:
            yield FeedRow(taken[0].number, raw_text, rejected=rejected)
            continue
        record = dict(zip(header, fields, strict=True))
        if repaired:
            record["_raw_line"] = raw_text
        yield FeedRow(taken[0].number, raw_text, record=record, repaired=repaired)


def _csv_header_read(fields: list[str], *, overflow_into: str | None,
                     header_check: Callable[[list[str]], None] | None) -> tuple[list[str], int | None]:
    """Return the checked header and the index of its overflow_into column (None without one)."""
    header = _csv_header(fields)
    if header_check is not None:
        header_check(header)
    if overflow_into is None:
        return header, None
    if overflow_into not in header:
        raise ImportFileError(f"overflow_into column {overflow_into!r} is not in the header "
                              f"({', '.join(header)})")
    return header, header.index(overflow_into)


def _csv_fields_fit(fields: list[str], *, expected: int, delimiter: str, overflow_index: int | None,
                    overflow_into: str | None) -> tuple[list[str], str, str]:
    """Fit a one-line record to the header's field count; return (fields, how repaired, why rejected)."""
    found = len(fields)
    if found < expected:
        return fields, "", f"expected {expected} fields, found {found}"
    if found == expected:
        return fields, "", ""
    extra = found - expected
    if not any(value.strip() for value in fields[expected:]):
        return fields[:expected], (f"expected {expected} fields, found {found}: dropped {extra} empty trailing "
                                   "fields"), ""
    if overflow_index is not None:
        joined = delimiter.join(fields[overflow_index:overflow_index + extra + 1])
        fields = [*fields[:overflow_index], joined, *fields[overflow_index + extra + 1:]]
        return fields, (f"expected {expected} fields, found {found}: joined {extra + 1} fields back into "
                        f"{overflow_into!r}"), ""
    return fields, "", f"expected {expected} fields, found {found}"


class FeedRows:
    """The rows of a feed file, with the field reader that fits them (for CSV, once the header is read)."""

    def __init__(self, feed: FeedFile, *, file_format: str, mapping: ImportMapping):
        if file_format not in ("jsonl", "csv"):
            raise ImportFileError(f"unknown format {file_format!r} (jsonl or csv)")
        self.feed = feed
        self.file_format = file_format
        self.mapping = mapping
        self.field_reader = FieldReader()

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
        self.field_reader = reader = FieldReader(header)
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
