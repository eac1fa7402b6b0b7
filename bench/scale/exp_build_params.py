"""One-off experiment: does a denser HNSW build remove the recall tail seen at 1M (queries whose same-photo
cluster the m=16 / ef_construction=64 graph does not reach)?

Builds an HNSW index with other (m, ef_construction) on scr_<n>_h_external (same rows, same heap order as the
main scratch table, no HNSW index of its own) and measures recall@k / latency of the same queries as the bench.

    .venv/bin/python bench/scale/exp_build_params.py --n 1000000 --m 16 --ef-construction 128
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.scale import scratch  # noqa: E402
from bench.scale.common import Meta, connect, execute, log, summarize  # noqa: E402
from bench.scale.inproc import ground_truth, recall  # noqa: E402
from bench.scale.synth import build_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("bench_main", REPO / "bench" / "bench_similarity_scale.py")
    bench = importlib.util.module_from_spec(spec)
    saved_argv, sys.argv = sys.argv, ["x"]
    spec.loader.exec_module(bench)
    sys.argv = saved_argv
    ds = build_dataset(args.n, seed=args.seed, log=log)
    rows, queries = bench.make_queries(ds, args.queries, args.seed + 2)
    truth = ground_truth(ds, rows, "global")
    dsn = "postgresql://labelapp@127.0.0.1:54329/labelapp_bench"
    conn = connect(dsn)
    meta = Meta(conn)
    table = f"scr_{ds.n}_h_external"
    index = f"{table}_hnsw_m{args.m}_c{args.ef_construction}"
    info = scratch.build_hnsw(conn, dsn, meta, table=table, index=index, kind="halfvec", m=args.m,
                              ef_construction=args.ef_construction, reuse=True)
    out = {"build": info, "rows": []}
    execute(conn, "SET jit = off")
    execute(conn, "SET enable_sort = off")
    sql = scratch.sql_hnsw(table, "global", resort=False)
    for k, efs in ((20, (40, 80)), (100, (200, 400))):
        for ef in efs:
            execute(conn, f"SET hnsw.ef_search = {ef}")
            lat, res = scratch.run_queries(conn, lambda q: sql, queries, k)
            rec = np.array([recall(o, t, k) for o, t in zip(res, truth)])
            row = {"k": k, "ef_search": ef, **summarize(lat, rec.tolist())}
            out["rows"].append(row)
            log(f"m={args.m} ef_c={args.ef_construction} k={k} ef={ef}: p50 {row['p50']:.2f} p95 {row['p95']:.2f} ms "
                f"recall {row['recall']:.4f} min {row['recall_min']:.2f} share<0.95 {row['share_lt_095']:.3f}")
    path = REPO / "bench" / "out" / f"exp_build_n{ds.n}_m{args.m}_c{args.ef_construction}.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
