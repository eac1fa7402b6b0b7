"""In-process comparators on the same vectors: exact NumPy scans (ground truth too) and hnswlib."""

from __future__ import annotations

import time

import numpy as np

from bench.scale.common import log, summarize
from bench.scale.synth import Dataset


def rss_anon_gib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def scope_slice(ds: Dataset, row: int, scope: str) -> slice:
    if scope == "global":
        return slice(0, ds.n)
    return ds.slice_of(scope, int(ds.level2[row] if scope == "level2" else ds.level3[row]))


def ground_truth(ds: Dataset, rows: np.ndarray, scope: str, kmax: int = 100, chunk: int = 100_000,
                 categories: np.ndarray | None = None) -> list[np.ndarray]:
    """Exact float32 top-kmax rows (dataset row indices) per query row, the query itself excluded.

    `categories` (scope "level3x"): the level-3 category to search per query instead of the query's own."""
    queries = np.asarray(ds.vectors[rows], dtype=np.float32)
    out: list[np.ndarray | None] = [None] * len(rows)
    if scope == "global":
        best_scores = np.full((len(rows), 0), -np.inf, dtype=np.float32)
        best_rows = np.zeros((len(rows), 0), dtype=np.int64)
        for start in range(0, ds.n, chunk):
            block = np.asarray(ds.vectors[start : start + chunk])
            scores = queries @ block.T  # [q, chunk]
            own = (rows >= start) & (rows < start + len(block))
            scores[np.nonzero(own)[0], rows[own] - start] = -np.inf
            take = min(kmax, scores.shape[1])
            part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
            cand_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, 1)], axis=1)
            cand_rows = np.concatenate([best_rows, part + start], axis=1)
            keep = np.argsort(-cand_scores, axis=1, kind="stable")[:, :kmax]
            best_scores = np.take_along_axis(cand_scores, keep, 1)
            best_rows = np.take_along_axis(cand_rows, keep, 1)
        return list(best_rows)
    groups: dict[int, list[int]] = {}
    column = ds.level2 if scope == "level2" else ds.level3
    for position, row in enumerate(rows):
        category = int(categories[position]) if categories is not None else int(column[row])
        groups.setdefault(category, []).append(position)
    for category, positions in groups.items():
        piece = ds.slice_of("level2" if scope == "level2" else "level3", category)
        block = np.asarray(ds.vectors[piece])
        scores = queries[positions] @ block.T
        for line, position in enumerate(positions):
            line_scores = scores[line]
            if piece.start <= rows[position] < piece.stop:
                line_scores[rows[position] - piece.start] = -np.inf
            local = _top(line_scores, kmax)
            local = local[~np.isneginf(line_scores[local])]  # scope smaller than kmax + 1
            out[position] = local + piece.start
    return out  # type: ignore[return-value]


def recall(result_product_ids, truth_rows: np.ndarray, k: int) -> float:
    """|result ∩ true top-k| / min(k, scope size - 1); product_id = row + 1."""
    truth = set((truth_rows[:k] + 1).tolist())
    if not truth:
        return 1.0
    return len(truth.intersection(result_product_ids[:k])) / len(truth)


def numpy_exact(ds: Dataset, matrix: np.ndarray, rows: np.ndarray, scope: str, k: int,
                max_queries: int) -> tuple[dict, list[list[int]]]:
    """Matrix-vector product over the scope's contiguous rows + argpartition; timed per query."""
    latencies, results = [], []
    for row in rows[:max_queries]:
        piece = scope_slice(ds, int(row), scope)
        started = time.perf_counter()
        query = matrix[row]
        scores = matrix[piece] @ query
        scores[row - piece.start] = -np.inf
        top = _top(scores, k) + piece.start
        latencies.append((time.perf_counter() - started) * 1000)
        results.append((top + 1).tolist())
    return summarize(latencies), results


class HnswlibSide:
    """hnswlib index over the same vectors (space cosine, same M / ef_construction), rows added in heap order."""

    def __init__(self, ds: Dataset, *, m: int = 16, ef_construction: int = 64, threads: int = 2,
                 insert_order: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        import hnswlib

        self.ds = ds
        rows = np.arange(ds.n) if rows is None else rows
        order = rows if insert_order is None else insert_order
        before = rss_anon_gib()
        started = time.perf_counter()
        self.index = hnswlib.Index(space="cosine", dim=ds.dim)
        self.index.init_index(max_elements=len(order), ef_construction=ef_construction, M=m, random_seed=7)
        self.index.set_num_threads(threads)
        chunk = 50_000
        for start in range(0, len(order), chunk):
            labels = order[start : start + chunk]
            self.index.add_items(np.asarray(ds.vectors[labels]), labels, num_threads=threads)
            if (start // chunk) % 4 == 0:
                log(f"  hnswlib add {start + len(labels):,}/{len(order):,}")
        self.build_seconds = time.perf_counter() - started
        self.memory_gib = rss_anon_gib() - before
        self.threads = threads

    @classmethod
    def load(cls, ds: Dataset, path) -> "HnswlibSide":
        import hnswlib

        side = cls.__new__(cls)
        side.ds = ds
        side.index = hnswlib.Index(space="cosine", dim=ds.dim)
        side.index.load_index(str(path), max_elements=ds.n)
        side.threads = 2
        return side

    def query(self, rows: np.ndarray, scope: str, k: int, ef: int, max_queries: int | None = None) -> tuple[dict, list]:
        self.index.set_ef(max(ef, k + 1))
        latencies, results = [], []
        level2, level3 = self.ds.level2, self.ds.level3
        for row in rows[:max_queries]:
            row = int(row)
            query = np.asarray(self.ds.vectors[row])
            if scope == "global":
                check = None
            elif scope == "level2":
                target = level2[row]
                check = lambda label, target=target: level2[label] == target  # noqa: E731
            else:
                target = level3[row]
                check = lambda label, target=target: level3[label] == target  # noqa: E731
            piece = scope_slice(self.ds, row, scope)
            want = min(k + 1, piece.stop - piece.start)
            started = time.perf_counter()
            try:
                labels, _ = self.index.knn_query(query, k=want, num_threads=1, filter=check)
                found = [int(label) for label in labels[0] if label != row][:k]
            except RuntimeError:  # fewer than k+1 matches exist
                found = []
            latencies.append((time.perf_counter() - started) * 1000)
            results.append([label + 1 for label in found])
        return summarize(latencies), results
