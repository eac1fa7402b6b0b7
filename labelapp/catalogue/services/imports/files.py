"""Feed files: bytes in, decoded lines out, with what is wrong with each line rather than an exception.

Messages name a file by its name, never its server path: they reach the import API and its pages.
"""

from __future__ import annotations

import codecs
import gzip
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ProgressCallback = Callable[[int, int], None]
"""Called as progress(bytes_done, bytes_total) while a file is read."""

MAX_LINE_BYTES = 8 * 1024 * 1024


class ImportFileError(Exception):
    """The file as a whole cannot be imported (unreadable, wrong encoding, no usable header…)."""


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
            raise ImportFileError(f"cannot open {path.name}: {exc.strerror or exc}") from exc
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
            raise ImportFileError(f"cannot read {self.path.name}: {exc}") from exc
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ImportFileError("the file is UTF-16 encoded; save it as UTF-8 (or CSV UTF-8 in Excel)")
        decoder = codecs.getdecoder(encoding)
        number = 0
        while True:
            try:
                raw = self.stream.readline(MAX_LINE_BYTES + 1)
            except (OSError, EOFError, zlib.error) as exc:
                raise ImportFileError(f"cannot read {self.path.name} after line {number}: {exc}") from exc
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
