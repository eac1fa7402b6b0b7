"""1M-scale vectors = real Myntra embedding + Gaussian noise, re-normalised.

Every synthetic product copies one real photo (drawn uniformly, so the level-2 / level-3
size distribution is the photos' distribution) and inherits its level-2 / level-3.

Noise: isotropic Gaussian N(0, s^2 I) with s = noise_ratio * d10 / sqrt(dim), where d10 is
the median Euclidean distance between a real photo and its 10th-nearest real photo; so the
expected noise norm equals noise_ratio * d10.

Layout: the arrays are ordered by (level2, level3) so that a category is a contiguous slice
(used by the in-process NumPy exact scan); product_id = position + 1. Postgres rows are
inserted in a random order (see pgload.heap_order) so the heap is not clustered by category.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.scale.base_vectors import OUT, load_or_embed


def topk_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, sorted descending."""
    part = np.argpartition(-scores, kth=min(k, scores.shape[1] - 1), axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def base_neighbour_stats(base: np.ndarray) -> dict[str, float]:
    """Distances from each real photo to its 1st / 10th / 100th nearest other photo."""
    sims = base @ base.T
    np.fill_diagonal(sims, -np.inf)
    top = np.sort(sims, axis=1)[:, ::-1][:, :100]
    dist = np.sqrt(np.maximum(2.0 - 2.0 * top, 0.0))
    return {f"d{rank}": float(np.median(dist[:, rank - 1])) for rank in (1, 10, 100)}


@dataclass
class Dataset:
    n: int
    dim: int
    vectors: np.ndarray  # float32 [n, dim] (np.memmap), ordered by (level2, level3)
    base_index: np.ndarray  # int32 [n] index of the real photo
    level2: np.ndarray  # int64 [n] level-2 category id (1-based)
    level3: np.ndarray  # int64 [n] level-3 category id (1-based, globally unique)
    level2_names: list[str]
    level3_names: list[str]
    level3_parent: np.ndarray  # int64 [n_level3] level-2 id of each level-3 id (index = id-1)
    noise_sigma: float
    stats: dict[str, float]

    @property
    def product_ids(self) -> np.ndarray:
        return np.arange(1, self.n + 1, dtype=np.int64)

    def slice_of(self, scope: str, category_id: int) -> slice:
        """Contiguous row range of a level-2 or level-3 category."""
        column = self.level2 if scope == "level2" else self.level3
        if scope == "level2":
            lo = np.searchsorted(self.level2, category_id, "left")
            hi = np.searchsorted(self.level2, category_id, "right")
            return slice(int(lo), int(hi))
        # level-3 ids are assigned in (level2, level3) order, so they are sorted too
        lo = np.searchsorted(column, category_id, "left")
        hi = np.searchsorted(column, category_id, "right")
        return slice(int(lo), int(hi))


def subset(ds: Dataset, rows: np.ndarray) -> Dataset:
    """A smaller dataset of some rows (kept in (level2, level3) order), renumbered 1..len(rows)."""
    rows = np.sort(rows)
    return Dataset(n=len(rows), dim=ds.dim, vectors=np.asarray(ds.vectors[rows]), base_index=ds.base_index[rows],
                   level2=ds.level2[rows], level3=ds.level3[rows], level2_names=ds.level2_names,
                   level3_names=ds.level3_names, level3_parent=ds.level3_parent, noise_sigma=ds.noise_sigma,
                   stats=ds.stats)


def build_dataset(n: int, *, noise_ratio: float = 1.0, seed: int = 20240601, log=print) -> Dataset:
    base = load_or_embed(log=log)
    vectors = base["vectors"].astype(np.float32)
    dim = vectors.shape[1]
    level2_names = sorted(set(base["level2"].tolist()))
    pairs = sorted(set(zip(base["level2"].tolist(), base["level3"].tolist())))
    level3_names = [f"{l2}/{l3}" for l2, l3 in pairs]
    l2_id = {name: i + 1 for i, name in enumerate(level2_names)}
    l3_id = {pair: i + 1 for i, pair in enumerate(pairs)}
    base_l2 = np.array([l2_id[name] for name in base["level2"].tolist()], dtype=np.int64)
    base_l3 = np.array([l3_id[pair] for pair in zip(base["level2"].tolist(), base["level3"].tolist())], dtype=np.int64)
    level3_parent = np.array([l2_id[l2] for l2, _ in pairs], dtype=np.int64)

    stats = base_neighbour_stats(vectors)
    sigma = noise_ratio * stats["d10"] / np.sqrt(dim)
    tag = f"n{n}_r{noise_ratio:g}_s{seed}"
    vec_path = OUT / f"synth_{tag}_f32.npy"
    meta_path = OUT / f"synth_{tag}_meta.npz"
    if not (vec_path.exists() and meta_path.exists()):
        started = time.perf_counter()
        rng = np.random.default_rng(seed)
        base_index = rng.integers(0, len(vectors), size=n).astype(np.int32)
        order = np.lexsort((base_index, base_l3[base_index], base_l2[base_index]))
        base_index = base_index[order]
        out = np.lib.format.open_memmap(str(vec_path) + ".tmp", mode="w+", dtype=np.float32, shape=(n, dim))
        chunk = 50_000
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            block = vectors[base_index[start:stop]] + rng.standard_normal((stop - start, dim), dtype=np.float32) * np.float32(sigma)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[start:stop] = block
        out.flush()
        del out
        Path(str(vec_path) + ".tmp").rename(vec_path)
        np.savez(meta_path, base_index=base_index)
        log(f"generated {n} vectors in {time.perf_counter() - started:.1f}s -> {vec_path.name}")
    base_index = np.load(meta_path)["base_index"]
    return Dataset(
        n=n,
        dim=dim,
        vectors=np.load(vec_path, mmap_mode="r"),
        base_index=base_index,
        level2=base_l2[base_index],
        level3=base_l3[base_index],
        level2_names=level2_names,
        level3_names=level3_names,
        level3_parent=level3_parent,
        noise_sigma=float(sigma),
        stats={**stats, "noise_norm": float(sigma * np.sqrt(dim)), "noise_ratio": noise_ratio},
    )
