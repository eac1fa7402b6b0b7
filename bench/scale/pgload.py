"""Fast loading of (product_id, level2_id, level3_id, embedding) rows with binary COPY.

Rows are formatted with one NumPy structured array per chunk (no per-row Python), in the
PostgreSQL binary COPY format; pgvector's binary input is int16 dim, int16 unused, then
dim big-endian float16 (halfvec) or float32 (vector).
"""

from __future__ import annotations

import io
import struct
import time
from typing import Iterable, Iterator

import numpy as np

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)


def row_dtype(dim: int, kind: str, extra_int_columns: int = 2) -> np.dtype:
    """Binary COPY tuple layout: pk bigint, `extra_int_columns` bigints, embedding."""
    value = ">f2" if kind == "halfvec" else ">f4"
    fields = [("nfields", ">i2"), ("len_pk", ">i4"), ("pk", ">i8")]
    for column in range(extra_int_columns):
        fields += [(f"len_c{column}", ">i4"), (f"c{column}", ">i8")]
    fields += [("len_vec", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vec", value, (dim,))]
    return np.dtype(fields)


def encode_rows(pk: np.ndarray, columns: list[np.ndarray], vectors: np.ndarray, kind: str) -> bytes:
    dim = vectors.shape[1]
    dtype = row_dtype(dim, kind, len(columns))
    rows = np.empty(len(pk), dtype=dtype)
    rows["nfields"] = 2 + len(columns)
    rows["len_pk"] = 8
    rows["pk"] = pk
    for index, column in enumerate(columns):
        rows[f"len_c{index}"] = 8
        rows[f"c{index}"] = column
    rows["len_vec"] = 4 + dim * (2 if kind == "halfvec" else 4)
    rows["dim"] = dim
    rows["unused"] = 0
    rows["vec"] = vectors.astype(np.float16 if kind == "halfvec" else np.float32)
    return rows.tobytes()


class _ChunkReader(io.RawIOBase):
    """File-like object over an iterator of bytes chunks, for psycopg2 copy_expert."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def copy_rows(
    cursor,
    table: str,
    column_names: list[str],
    row_indices: np.ndarray,
    pk: np.ndarray,
    columns: list[np.ndarray],
    vectors: np.ndarray,
    kind: str,
    *,
    chunk: int = 20_000,
    log=print,
) -> float:
    """COPY rows `row_indices` (in that order) of the given arrays; return seconds."""

    def chunks() -> Iterator[bytes]:
        yield COPY_HEADER
        for start in range(0, len(row_indices), chunk):
            rows = row_indices[start : start + chunk]
            yield encode_rows(pk[rows], [column[rows] for column in columns], np.asarray(vectors[rows]), kind)
            if (start // chunk) % 10 == 0:
                log(f"  COPY {table}: {start + len(rows):,}/{len(row_indices):,}")
        yield COPY_TRAILER

    started = time.perf_counter()
    reader = io.BufferedReader(_ChunkReader(chunks()), buffer_size=1 << 20)
    cursor.copy_expert(f"COPY {table} ({', '.join(column_names)}) FROM STDIN WITH (FORMAT binary)", reader)
    return time.perf_counter() - started
