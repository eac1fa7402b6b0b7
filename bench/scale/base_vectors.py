"""Real base vectors: embed the Myntra photos once with the project's embedder and cache them.

Cache: bench/out/myntra_base_<model_version>.npz with ids (int64), level2 / level3 names,
vectors float32 [n, 1280] (L2-normalised). Photos the embedder rejects are dropped.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

DATASET = Path("/work/shared/datasets/myntra-fashion")
REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "bench" / "out"


def read_styles() -> list[dict[str, str]]:
    with open(DATASET / "styles_clean.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row for row in rows if (DATASET / "images" / f"{row['id']}.jpg").exists()]


def cache_path() -> Path:
    sys.path.insert(0, str(REPO))
    from similarity.core.backbones import MODEL_VERSION

    return OUT / f"myntra_base_{MODEL_VERSION}.npz"


def load_or_embed(log=print) -> dict[str, np.ndarray]:
    path = cache_path()
    if path.exists():
        data = np.load(path, allow_pickle=False)
        return {key: data[key] for key in data.files}
    from similarity.core.embedder import ImageEmbedder

    rows = read_styles()
    paths = [str(DATASET / "images" / f"{row['id']}.jpg") for row in rows]
    log(f"embedding {len(paths)} Myntra photos with similarity.core.embedder ...")
    started = time.perf_counter()
    result = ImageEmbedder(batch_size=64, workers=2).embed_paths(paths)
    seconds = time.perf_counter() - started
    keep = np.array([index not in result.errors for index in range(len(rows))])
    log(f"embedded {keep.sum()} photos in {seconds:.1f}s ({len(result.errors)} rejected)")
    data = {
        "ids": np.array([int(row["id"]) for row in rows], dtype=np.int64)[keep],
        "level2": np.array([row["subCategory"] for row in rows])[keep],
        "level3": np.array([row["articleType"] for row in rows])[keep],
        "vectors": result.vectors[keep].astype(np.float32),
        "embed_seconds": np.float64(seconds),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.rename(path)
    return data


if __name__ == "__main__":
    out = load_or_embed()
    print({key: getattr(value, "shape", value) for key, value in out.items()})
