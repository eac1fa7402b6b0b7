"""Similar-products at scale: pgvector HNSW (halfvec / vector) with category filters vs hnswlib vs NumPy.

    DJANGO_DEBUG=1 .venv/bin/python bench/bench_similarity_scale.py --n 1000000 [--queries 300] [--reuse]

Data: the 9,583 Myntra photos embedded once by similarity.core.embedder (cached in bench/out/), then n vectors
= a real embedding (photo drawn uniformly) + isotropic Gaussian noise of norm `--noise-ratio` x d10 (median
distance from a photo to its 10th-nearest photo), re-normalised; each inherits its photo's level-2
(subCategory) and level-3 (articleType).

Everything lives in the database labelapp_bench (created if missing); nothing in labelapp is touched.

* Scratch schema (always): UNLOGGED tables scr_<n>_h (halfvec, STORAGE PLAIN by default) with a global HNSW
  index, scr_<n>_h_external (same rows, default TOAST storage, exact scans only), scr_<n>_cmpv / scr_<n>_cmph
  (vector and halfvec on the same --cmp-n subset), loaded by binary COPY; HNSW --m 16, --ef-construction 64.
  Strategies: plain HNSW + WHERE, iterative scans (strict / relaxed, max_scan_tuples), exact SQL, a hybrid
  (exact when the scope has <= --exact-max-rows rows, else relaxed HNSW), the planner's own choice, optional
  partial per-level-2 indexes (--partial-min-rows), and an adversarial scope "level3x" (a random other level-3
  category: the filter does not follow the neighbourhood).
* In-process on the same vectors: exact NumPy scans (float32 BLAS, float16) and hnswlib (same M / ef_construction,
  filter callable); the hnswlib index is saved in bench/out/ for --reuse.
* Real app (when similarity.selectors / the API exist and --api is not "off"): migrations on labelapp_bench,
  Category + Product + ImageEmbedding rows by COPY, then the API via Django's test Client and the selector's
  SQL alone (bench/scale/app.py).

Ground truth is an exact float32 NumPy scan. Latencies are wall-clock per query from the client, warm cache (one
unmeasured pass over the same queries first). --reuse keeps tables / indexes / hnswlib / app rows that exist.
A fresh --n 1000000 run takes about an hour on 2 cores (HNSW builds ~9 min each for the scratch and the app
table, hnswlib ~11 min); it logs to stdout, so run it under nohup with a log in bench/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scale import scratch  # noqa: E402
from bench.scale.common import Meta, connect, execute, loadavg, log, peak_rss_gib, pretty_bytes, scalar, summarize  # noqa: E402
from bench.scale.inproc import HnswlibSide, ground_truth, numpy_exact, recall  # noqa: E402
from bench.scale.synth import Dataset, build_dataset, subset  # noqa: E402

OUT = REPO / "bench" / "out"
ADMIN_DSN = "postgresql://labelapp@127.0.0.1:54329/labelapp"
BENCH_DB = "labelapp_bench"


def ef_for(k: int, factor: float) -> int:
    return int(min(1000, max(40, round(factor * k))))


def mwm_for(rows: int, cap: str) -> str:
    """maintenance_work_mem for an HNSW build of `rows`: ~8 KiB a row (the 1280-d halfvec graph takes ~3-4 KiB),
    at least 256MB, at most `cap`. A parallel build reserves all of it in /dev/shm up front, so do not oversize."""
    cap_mb = int(cap[:-2]) * (1024 if cap.upper().endswith("GB") else 1) if cap.upper().endswith(("GB", "MB")) else 8192
    return f"{min(cap_mb, max(256, rows * 8 // 1024))}MB"


def ensure_database(dsn_admin: str) -> None:
    conn = connect(dsn_admin)
    if not scalar(conn, "SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]):
        execute(conn, f"CREATE DATABASE {BENCH_DB}")
    conn.close()


def size_bucket(size: int, n: int) -> str:
    fraction = size / n
    for limit, name in ((0.005, "<0.5%"), (0.02, "0.5-2%"), (0.10, "2-10%"), (0.5, "10-50%")):
        if fraction < limit:
            return name
    return ">=50%"


BUCKETS = ["<0.5%", "0.5-2%", "2-10%", "10-50%", ">=50%"]


class Results:
    def __init__(self, n: int) -> None:
        self.n = n
        self.rows: list[dict] = []
        self.facts: dict = {}

    def add(self, *, k: int, scope: str, engine: str, strategy: str, stats: dict, recalls=None, sizes=None,
            extra: dict | None = None, latencies=None) -> dict:
        row = {"k": k, "scope": scope, "engine": engine, "strategy": strategy, **stats}
        if recalls is not None:
            row |= summarize([0.0] * len(recalls), recalls) | {k2: stats[k2] for k2 in ("n", "p50", "p95", "mean")}
            if sizes is not None:
                per = {}
                for bucket in BUCKETS:
                    values = [r for r, s in zip(recalls, sizes) if size_bucket(s, self.n) == bucket]
                    if values:
                        per[bucket] = (round(float(np.mean(values)), 3), len(values))
                row["recall_by_size"] = per
                if latencies is not None:
                    row["p95_by_size"] = {
                        bucket: round(float(np.percentile([l for l, s in zip(latencies, sizes)
                                                           if size_bucket(s, self.n) == bucket], 95)), 2)
                        for bucket in per}
        if extra:
            row |= extra
        row["loadavg"] = loadavg()
        self.rows.append(row)
        log(f"  {engine:8s} {scope:7s} k={k:<3d} {strategy:34s} n={row['n']:<4d} p50={row['p50']:8.2f} "
            f"p95={row['p95']:8.2f} ms" + (f"  recall={row['recall']:.4f} p5={row['recall_p5']:.3f}"
                                            if "recall" in row else "") + f"  load={loadavg()}")
        return row


def measure_sql(conn, res: Results, ds: Dataset, *, table: str, engine: str, queries: list[dict], truth: dict,
                ks: list[int], args, partial: dict[int, str], exact_max_rows: int, full: bool) -> None:
    """All SQL strategies on one table. `truth[scope]` = list of true rows per query.

    Scope "level3x" (--adversarial) filters each query by a random level-3 category other than its own: the
    filter no longer follows the vector neighbourhood, the worst case for a filtered graph walk."""
    execute(conn, "SET jit = off")
    forced = {"enable_sort": "off"}  # PG18 disabled-node counting: the only sort-free ordered path is HNSW
    for k in ks:
        ef = ef_for(k, args.ef_factor)
        # ---- global: ef_search grid
        grid = sorted({ef_for(k, f) for f in args.ef_grid} | {ef}) if full else [ef]
        for ef_value in grid:
            scratch.set_many(conn, {"hnsw.ef_search": ef_value, "hnsw.iterative_scan": "off"} | forced)
            sql = scratch.sql_hnsw(table, "global", resort=False)
            lat, out = scratch.run_queries(conn, lambda q: sql, queries, k)
            rec = [recall(o, t, k) for o, t in zip(out, truth["global"])]
            res.add(k=k, scope="global", engine=engine, strategy=f"hnsw ef_search={ef_value}",
                    stats=summarize(lat), recalls=rec)
        scratch.reset_many(conn, ["hnsw.ef_search", "hnsw.iterative_scan", *forced])
        # ---- exact SQL (reference; bounded number of queries on big scopes)
        for scope in ("global", "level2", "level3"):
            chosen = [i for i, q in enumerate(queries) if scope != "global" and q[f"size_{scope}"] <= args.exact_all_below]
            big_count = args.exact_big_queries if scope != "global" else min(5, args.exact_big_queries)
            big = [i for i, q in enumerate(queries) if i not in set(chosen)][:big_count]
            idx = sorted(set(chosen) | set(big)) if full else chosen[: args.exact_big_queries]
            if not idx:
                continue
            sub = [queries[i] for i in idx]
            sql = scratch.sql_exact(table, scope)
            lat, out = scratch.run_queries(conn, lambda q: sql, sub, k, repeat_warm=scope != "global")
            rec = [recall(o, truth[scope][i], k) for o, i in zip(out, idx)]
            sizes = [queries[i][f"size_{scope}"] if scope != "global" else ds.n for i in idx]
            row = res.add(k=k, scope=scope, engine=engine, strategy="exact SQL (btree/seq + top-N sort)",
                          stats=summarize(lat), recalls=rec, sizes=sizes, latencies=lat,
                          extra={"plan": scratch.plan_summary(conn, sql, sub[0] | {"k": k})})
            row["latency_vs_size"] = [(s, round(l, 2)) for s, l in zip(sizes, lat)]
        # ---- filtered strategies
        mst_values = args.max_scan_tuples
        all_queries, all_truth = queries, truth
        for scope in ["level2", "level3"] + (["level3x"] if "level3x" in all_truth else []):
            queries, truth = all_queries, all_truth
            if scope == "level3x":  # scans up to max_scan_tuples per query: a bounded subset
                queries = all_queries[: args.adversarial_queries]
                truth = {scope: all_truth[scope][: args.adversarial_queries]}
            sizes = [q[f"size_{scope}"] for q in queries]
            variants = []
            if full and scope != "level3x":
                variants.append(("hnsw+filter, iterative off", {"hnsw.iterative_scan": "off"}, False))
                variants.append(("hnsw+filter, strict_order mst=20000",
                                 {"hnsw.iterative_scan": "strict_order", "hnsw.max_scan_tuples": 20000}, False))
            if scope == "level3x":
                variants.append(("hnsw+filter, iterative off", {"hnsw.iterative_scan": "off"}, False))
            for mst in mst_values:
                variants.append((f"hnsw+filter, relaxed_order mst={mst}",
                                 {"hnsw.iterative_scan": "relaxed_order", "hnsw.max_scan_tuples": mst}, True))
            for name, settings, resort in variants:
                scratch.set_many(conn, {"hnsw.ef_search": ef} | settings | forced)
                sql = scratch.sql_hnsw(table, scope, resort=resort)
                lat, out = scratch.run_queries(conn, lambda q: sql, queries, k)
                rec = [recall(o, t, k) for o, t in zip(out, truth[scope])]
                short = float(np.mean([len(o) < min(k, len(t)) for o, t in zip(out, truth[scope])]))
                res.add(k=k, scope=scope, engine=engine, strategy=f"{name} ef={ef}", stats=summarize(lat),
                        recalls=rec, sizes=sizes, extra={"share_short": short}, latencies=lat)
                scratch.reset_many(conn, ["hnsw.iterative_scan", "hnsw.max_scan_tuples", *forced])
            # ---- hybrid: exact when the scope is small, else HNSW relaxed (partial index when there is one)
            mst = args.hybrid_max_scan_tuples
            scratch.set_many(conn, {"hnsw.ef_search": ef, "hnsw.iterative_scan": "relaxed_order",
                                    "hnsw.max_scan_tuples": mst} | forced)
            exact_sql = scratch.sql_exact(table, scope)
            hnsw_sql = scratch.sql_hnsw(table, scope, resort=True)
            parent_sql = scratch.sql_hnsw(table, scope, resort=True, with_parent=True)

            def hybrid_sql(q, scope=scope):
                if q[f"size_{scope}"] <= exact_max_rows:
                    return exact_sql
                if scope == "level3" and q["l2"] in partial:
                    return parent_sql
                return hnsw_sql

            # the exact branch needs sorting: enable_sort only matters for it, so turn it back on there
            def run_hybrid():
                lat, out = [], []
                with conn.cursor() as cursor:
                    for warm in (True, False):
                        for q in queries:
                            sql = hybrid_sql(q)
                            cursor.execute("SET enable_sort = " + ("on" if sql is exact_sql else "off"))
                            started = time.perf_counter()
                            cursor.execute(sql, q | {"k": k})
                            rows = cursor.fetchall()
                            if not warm:
                                lat.append((time.perf_counter() - started) * 1000)
                                out.append([r[0] for r in rows])
                return lat, out

            lat, out = run_hybrid()
            rec = [recall(o, t, k) for o, t in zip(out, truth[scope])]
            plans = {}
            for q in queries[: args.explain_queries]:
                sql = hybrid_sql(q)
                execute(conn, "SET enable_sort = " + ("on" if sql is exact_sql else "off"))
                plan = scratch.plan_summary(conn, sql, q | {"k": k})
                plans[plan] = plans.get(plan, 0) + 1
            exact_lat = [l for l, q in zip(lat, queries) if q[f"size_{scope}"] <= exact_max_rows]
            hnsw_lat = [l for l, q in zip(lat, queries) if q[f"size_{scope}"] > exact_max_rows]
            res.add(k=k, scope=scope, engine=engine,
                    strategy=f"hybrid exact<={exact_max_rows} else relaxed mst={mst}" + (" +partial" if partial else ""),
                    stats=summarize(lat), recalls=rec, sizes=sizes, latencies=lat,
                    extra={"plans": plans, "exact_branch": summarize(exact_lat) if exact_lat else None,
                           "hnsw_branch": summarize(hnsw_lat) if hnsw_lat else None})
            scratch.reset_many(conn, ["hnsw.iterative_scan", "hnsw.max_scan_tuples", "enable_sort"])
            if full:
                # ---- what the planner does on its own with relaxed_order (no forcing)
                scratch.set_many(conn, {"hnsw.ef_search": ef, "hnsw.iterative_scan": "relaxed_order",
                                        "hnsw.max_scan_tuples": mst})
                lat, out = scratch.run_queries(conn, lambda q: hnsw_sql, queries, k)
                rec = [recall(o, t, k) for o, t in zip(out, truth[scope])]
                plans = {}
                for q in queries[: args.explain_queries]:
                    plan = scratch.plan_summary(conn, hnsw_sql, q | {"k": k})
                    plans[plan] = plans.get(plan, 0) + 1
                res.add(k=k, scope=scope, engine=engine, strategy=f"planner's choice, relaxed mst={mst}",
                        stats=summarize(lat), recalls=rec, sizes=sizes, extra={"plans": plans}, latencies=lat)
                scratch.reset_many(conn, ["hnsw.iterative_scan", "hnsw.max_scan_tuples", "hnsw.ef_search"])
        queries, truth = all_queries, all_truth


def measure_exact_only(conn, res: Results, ds: Dataset, *, table: str, engine: str, queries: list[dict],
                       truth: dict, ks: list[int], args) -> None:
    execute(conn, "SET jit = off")
    for k in ks:
        for scope in ("level2", "level3"):
            idx = [i for i, q in enumerate(queries) if q[f"size_{scope}"] <= args.exact_all_below]
            idx += [i for i, q in enumerate(queries) if q[f"size_{scope}"] > args.exact_all_below][: args.exact_big_queries]
            sub = [queries[i] for i in sorted(idx)]
            sql = scratch.sql_exact(table, scope)
            lat, out = scratch.run_queries(conn, lambda q: sql, sub, k)
            rec = [recall(o, truth[scope][i], k) for o, i in zip(out, sorted(idx))]
            sizes = [q[f"size_{scope}"] for q in sub]
            row = res.add(k=k, scope=scope, engine=engine, strategy="exact SQL (btree/seq + top-N sort)",
                          stats=summarize(lat), recalls=rec, sizes=sizes, latencies=lat,
                          extra={"plan": scratch.plan_summary(conn, sql, sub[0] | {"k": k})})
            row["latency_vs_size"] = [(s2, round(l, 2)) for s2, l in zip(sizes, lat)]


def checkpoint(res: Results, facts: dict) -> None:
    """Write what is measured so far (a later section failing loses nothing)."""
    path = OUT / f"scale_n{res.n}.partial.json"
    path.write_text(json.dumps({"facts": facts, "rows": res.rows}, indent=1, default=str))


def make_queries(ds: Dataset, count: int, seed: int) -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(ds.n, size=min(count, ds.n), replace=False))
    rng.shuffle(rows)
    level3_ids = np.unique(ds.level3)
    queries = []
    for row in rows:
        l2, l3 = int(ds.level2[row]), int(ds.level3[row])
        s2, s3 = ds.slice_of("level2", l2), ds.slice_of("level3", l3)
        other = int(rng.choice(level3_ids[level3_ids != l3]))
        s3x = ds.slice_of("level3", other)
        queries.append({"pid": int(row) + 1, "l2": l2, "l3": l3, "size_level2": s2.stop - s2.start,
                        "size_level3": s3.stop - s3.start, "l3x": other, "size_level3x": s3x.stop - s3x.start})
    return rows, queries


def truth_for(ds: Dataset, rows: np.ndarray, queries: list[dict], adversarial: bool = False) -> dict:
    started = time.perf_counter()
    truth = {scope: ground_truth(ds, rows, scope) for scope in ("global", "level2", "level3")}
    if adversarial:
        truth["level3x"] = ground_truth(ds, rows, "level3x", categories=np.array([q["l3x"] for q in queries]))
    log(f"ground truth (exact float32 NumPy, 3 scopes, {len(rows)} queries) in {time.perf_counter() - started:.1f}s")
    return truth


def print_report(res: Results, facts: dict) -> None:
    print("\n" + "=" * 120)
    print(f"SIMILARITY AT SCALE — n={res.n:,}  (facts below; every figure measured in this run unless marked)")
    print("=" * 120)
    for key, value in facts.items():
        print(f"{key}: {json.dumps(value, default=str)}")
    print("-" * 120)
    sized = {key: value for key, value in facts.items() if key.startswith("sizes_") and isinstance(value, dict)}
    if isinstance(facts.get("app_load"), dict) and "sizes" in facts["app_load"]:
        sized["app similarity_imageembedding"] = facts["app_load"]["sizes"]
    for key, value in sized.items():
        parts = ", ".join(f"{name} {pretty_bytes(size)}" for name, size in value.get("per_index", {}).items())
        print(f"{key}: heap {pretty_bytes(value['heap'])}" + (f", toast {pretty_bytes(value['toast'])}" if "toast" in value else "")
              + f", total {pretty_bytes(value['total'])}; indexes: {parts}")
    builds = {key: value for key, value in facts.items() if key.startswith("build_") and isinstance(value, dict)}
    for key, value in builds.items():
        print(f"{key}: {value['rows']:,} rows in {value['seconds']} s, index {pretty_bytes(value['size'])}, "
              f"maintenance_work_mem {value['maintenance_work_mem']}, workers {value['parallel_workers']}, "
              f"peak /dev/shm {value['memory']['peak_shm_gib']} GiB")
    print(f"peak RSS of this Python process: {peak_rss_gib():.2f} GiB")
    print("-" * 120)
    header = f"{'engine':9s} {'scope':7s} {'k':>3s}  {'strategy':52s} {'n':>4s} {'p50 ms':>8s} {'p95 ms':>8s} {'recall':>7s} {'p5':>6s} {'<0.95':>6s}  recall(queries)/p95 by scope size (share of n)"
    print(header)
    for row in res.rows:
        by = row.get("recall_by_size", {})
        p95s = row.get("p95_by_size", {})
        by_text = " ".join(f"{b}:{v[0]:.3f}({v[1]})" + (f"/{p95s[b]:.0f}ms" if b in p95s else "") for b, v in by.items())
        rec = f"{row['recall']:7.4f} {row['recall_p5']:6.3f} {row['share_lt_095']:6.2f}" if "recall" in row else " " * 21
        print(f"{row['engine']:9s} {row['scope']:7s} {row['k']:>3d}  {row['strategy'][:52]:52s} {row['n']:>4d} "
              f"{row['p50']:8.2f} {row['p95']:8.2f} {rec}  {by_text}")
    print("=" * 120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--reuse", action="store_true", help="keep tables / indexes that exist")
    parser.add_argument("--noise-ratio", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--cmp-n", type=int, default=100_000, help="rows of the vector-vs-halfvec comparison")
    parser.add_argument("--storage", choices=["external", "plain"], default="plain",
                        help="TOAST storage of the scratch embedding column (plain keeps the 2.5 KiB halfvec inline)")
    parser.add_argument("--ks", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--ef-factor", type=float, default=2.0, help="ef_search = clamp(factor*k, 40, 1000)")
    parser.add_argument("--ef-grid", type=float, nargs="+", default=[1.0, 1.5, 2.0, 4.0])
    parser.add_argument("--max-scan-tuples", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--hybrid-max-scan-tuples", type=int, default=20000)
    parser.add_argument("--exact-max-rows", type=int, default=3000,
                        help="hybrid: exact scan when the scope has at most this many rows")
    parser.add_argument("--partial-min-rows", type=int, default=None,
                        help="partial HNSW index per level-2 with at least this many rows (0 = none; default off)")
    parser.add_argument("--exact-all-below", type=int, default=20000, help="exact SQL on every query whose scope is <= this")
    parser.add_argument("--exact-big-queries", type=int, default=10, help="exact SQL queries on bigger scopes")
    parser.add_argument("--explain-queries", type=int, default=40)
    parser.add_argument("--numpy-queries", type=int, default=100, help="NumPy float32 exact queries per scope")
    parser.add_argument("--numpy16-queries", type=int, default=10, help="NumPy float16 exact queries per scope")
    parser.add_argument("--hnswlib", choices=["on", "off"], default="on")
    parser.add_argument("--api", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--api-queries", type=int, default=None)
    parser.add_argument("--app-storage", choices=["external", "plain"], default="external",
                        help="TOAST storage of the app's embedding column in the bench database (app default: external)")
    parser.add_argument("--maintenance-work-mem", default="8GB")
    parser.add_argument("--m", type=int, default=16, help="HNSW m (scratch indexes and hnswlib M)")
    parser.add_argument("--ef-construction", type=int, default=64, help="HNSW ef_construction (scratch and hnswlib)")
    parser.add_argument("--parallel-workers", type=int, default=2)
    parser.add_argument("--skip-cmp", action="store_true")
    parser.add_argument("--skip-sql", action="store_true", help="skip the scratch-table SQL strategies")
    parser.add_argument("--skip-numpy", action="store_true")
    parser.add_argument("--adversarial-queries", type=int, default=50)
    parser.add_argument("--adversarial", action=argparse.BooleanOptionalAction, default=True,
                        help="also filter each query by a random other level-3 category (scope level3x)")
    parser.add_argument("--storage-copy", action=argparse.BooleanOptionalAction, default=True,
                        help="also copy the main table with the other TOAST storage and time exact scans on it")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    dsn = f"postgresql://labelapp@127.0.0.1:54329/{BENCH_DB}"
    ensure_database(ADMIN_DSN)
    conn = connect(dsn)
    execute(conn, "CREATE EXTENSION IF NOT EXISTS vector")
    meta = Meta(conn)
    facts: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "args": vars(args)}
    with conn.cursor() as cursor:
        cursor.execute("SELECT version(), current_setting('shared_buffers'), current_setting('work_mem'), "
                       "current_setting('effective_cache_size'), current_setting('io_method'), "
                       "(SELECT extversion FROM pg_extension WHERE extname = 'vector')")
        facts["postgres"] = dict(zip(["version", "shared_buffers", "work_mem", "effective_cache_size", "io_method",
                                      "pgvector"], cursor.fetchone()))
    facts["cpus"] = os.cpu_count()

    # ---- data
    ds = build_dataset(args.n, noise_ratio=args.noise_ratio, seed=args.seed, log=log)
    facts["data"] = {"n": ds.n, "dim": ds.dim, "photos": int(ds.base_index.max() + 1), "level2": len(set(ds.level2.tolist())),
                     "level3": len(set(ds.level3.tolist())), **{k: round(v, 4) for k, v in ds.stats.items()},
                     "largest_level2_share": round(float(np.bincount(ds.level2).max() / ds.n), 3)}
    exact_max_rows = args.exact_max_rows or max(5000, ds.n // 100)
    heap_order = np.random.default_rng(args.seed + 1).permutation(ds.n)

    # ---- scratch: main halfvec table + global index
    table = f"scr_{ds.n}_h"
    facts["load_main"] = scratch.load_table(conn, meta, table=table, kind="halfvec", ds=ds, rows=heap_order,
                                            storage=args.storage, reuse=args.reuse)
    facts["build_main"] = scratch.build_hnsw(conn, dsn, meta, table=table, index=f"{table}_hnsw", kind="halfvec",
                                             maintenance_work_mem=args.maintenance_work_mem,
                                             parallel_workers=args.parallel_workers, reuse=args.reuse,
                                             m=args.m, ef_construction=args.ef_construction)
    # partial indexes per big level-2
    partial: dict[int, str] = {}
    if args.partial_min_rows:
        counts = np.bincount(ds.level2)
        for l2 in np.nonzero(counts >= args.partial_min_rows)[0]:
            name = f"{table}_hnsw_l2_{int(l2)}"
            facts[f"build_partial_l2_{int(l2)}"] = scratch.build_hnsw(
                conn, dsn, meta, table=table, index=name, kind="halfvec", where=f"level2_id = {int(l2)}",
                maintenance_work_mem=mwm_for(int(counts[l2]), args.maintenance_work_mem),
                parallel_workers=args.parallel_workers, reuse=args.reuse, m=args.m, ef_construction=args.ef_construction)
            partial[int(l2)] = name
    facts["sizes_main"] = scratch.relation_sizes(conn, table)
    other = "external" if args.storage == "plain" else "plain"
    copy_table = f"{table}_{other}"
    if args.storage_copy:
        key = f"load:{copy_table}"
        if not (args.reuse and scratch.table_exists(conn, copy_table) and meta.get(key)):
            started = time.perf_counter()
            execute(conn, f"DROP TABLE IF EXISTS {copy_table}")
            execute(conn, f"CREATE UNLOGGED TABLE {copy_table} (LIKE {table})")
            execute(conn, f"ALTER TABLE {copy_table} ALTER COLUMN embedding SET STORAGE {other.upper()}")
            execute(conn, f"INSERT INTO {copy_table} SELECT * FROM {table} ORDER BY ctid")
            execute(conn, f"ALTER TABLE {copy_table} ADD PRIMARY KEY (product_id)")
            execute(conn, f"CREATE INDEX ON {copy_table} (level2_id)")
            execute(conn, f"CREATE INDEX ON {copy_table} (level3_id)")
            execute(conn, f"VACUUM (ANALYZE) {copy_table}")
            meta.put(key, {"rows": ds.n, "storage": other, "seconds": round(time.perf_counter() - started, 1)})
        facts[f"sizes_{other}_copy"] = scratch.relation_sizes(conn, copy_table)
    facts["exact_max_rows"] = exact_max_rows

    # ---- queries and truth
    rows, queries = make_queries(ds, args.queries, args.seed + 2)
    truth = truth_for(ds, rows, queries, args.adversarial)
    same_base = np.mean([np.mean(ds.base_index[t[:100]] == ds.base_index[r]) for t, r in zip(truth["global"], rows)])
    facts["data"]["top100_share_same_photo"] = round(float(same_base), 3)
    facts["data"]["top100_share_same_level2"] = round(float(np.mean(
        [np.mean(ds.level2[t[:100]] == ds.level2[r]) for t, r in zip(truth["global"], rows)])), 3)
    facts["data"]["top100_share_same_level3"] = round(float(np.mean(
        [np.mean(ds.level3[t[:100]] == ds.level3[r]) for t, r in zip(truth["global"], rows)])), 3)
    res = Results(ds.n)
    if not args.skip_sql:
        log(f"SQL strategies on {table} (load {loadavg()})")
        measure_sql(conn, res, ds, table=table, engine=f"pg-{args.storage[:5]}", queries=queries, truth=truth,
                    ks=args.ks, args=args, partial=partial, exact_max_rows=exact_max_rows, full=True)
        checkpoint(res, facts)

    if args.storage_copy and not args.skip_sql:
        log(f"exact SQL on {copy_table} (storage {other}, no HNSW index)")
        measure_exact_only(conn, res, ds, table=copy_table, engine=f"pg-{other[:5]}", queries=queries, truth=truth,
                           ks=args.ks, args=args)

    # ---- vector vs halfvec on the same subset
    if not args.skip_cmp:
        cmp_rows = np.sort(np.random.default_rng(args.seed + 3).choice(ds.n, size=min(args.cmp_n, ds.n), replace=False))
        small = subset(ds, cmp_rows)
        small_heap = np.random.default_rng(args.seed + 4).permutation(small.n)
        srows, squeries = make_queries(small, min(args.queries, 200), args.seed + 5)
        struth = truth_for(small, srows, squeries)
        for kind, suffix in (("vector", "cmpv"), ("halfvec", "cmph")):
            name = f"scr_{ds.n}_{suffix}"
            facts[f"load_{suffix}"] = scratch.load_table(conn, meta, table=name, kind=kind, ds=small, rows=small_heap,
                                                         storage=args.storage, reuse=args.reuse)
            facts[f"build_{suffix}"] = scratch.build_hnsw(conn, dsn, meta, table=name, index=f"{name}_hnsw", kind=kind,
                                                          maintenance_work_mem=mwm_for(small.n, args.maintenance_work_mem),
                                                          parallel_workers=args.parallel_workers, reuse=args.reuse,
                                             m=args.m, ef_construction=args.ef_construction)
            facts[f"sizes_{suffix}"] = scratch.relation_sizes(conn, name)
            log(f"SQL strategies on {name} (cmp, {kind}, n={small.n:,})")
            cmp_args = argparse.Namespace(**(vars(args) | {"ef_grid": [1.0, 2.0], "max_scan_tuples": [20000]}))
            measure_sql(conn, res, small, table=name, engine=f"cmp-{kind[:4]}", queries=squeries, truth=struth,
                        ks=args.ks, args=cmp_args, partial={}, exact_max_rows=max(5000, small.n // 100), full=False)
        del small

    checkpoint(res, facts)
    # ---- NumPy exact (float32 and float16) on the same vectors
    log(f"NumPy exact scans (load {loadavg()})")
    matrix32 = np.asarray(ds.vectors)  # memory-mapped, warm page cache after the ground truth
    for k in args.ks if not args.skip_numpy else []:
        for scope in ("global", "level2", "level3"):
            count = args.numpy_queries if scope != "global" else max(5, args.numpy_queries // 5)
            stats, out = numpy_exact(ds, matrix32, rows, scope, k, count)
            rec = [recall(o, t, k) for o, t in zip(out, truth[scope])]
            res.add(k=k, scope=scope, engine="numpy", strategy="exact float32 matvec", stats=stats, recalls=rec)
    if not args.skip_numpy:
        started = time.perf_counter()
        matrix16 = np.asarray(ds.vectors).astype(np.float16)
        facts["numpy_float16_convert_s"] = round(time.perf_counter() - started, 1)
        facts["numpy_memory_gib"] = {"float32": round(matrix32.nbytes / 1024**3, 2),
                                     "float16": round(matrix16.nbytes / 1024**3, 2)}
    for k in args.ks[-1:] if not args.skip_numpy else []:
        for scope in ("global", "level2", "level3"):
            count = args.numpy16_queries if scope != "global" else min(3, args.numpy16_queries)
            stats, out = numpy_exact(ds, matrix16, rows, scope, k, count)
            rec = [recall(o, t, k) for o, t in zip(out, truth[scope])]
            res.add(k=k, scope=scope, engine="numpy", strategy="exact float16 matvec (no BLAS)", stats=stats,
                    recalls=rec)
    if not args.skip_numpy:
        del matrix16

    # ---- hnswlib
    if args.hnswlib == "on":
        log(f"hnswlib build M={args.m} ef_construction={args.ef_construction} on {ds.n:,} (load {loadavg()})")
        saved = OUT / f"hnswlib_n{ds.n}_r{args.noise_ratio:g}_s{args.seed}_m{args.m}_c{args.ef_construction}.bin"
        saved_facts = saved.with_suffix(".json")
        if args.reuse and saved.exists() and saved_facts.exists():
            side = HnswlibSide.load(ds, saved)
            facts["hnswlib_build"] = json.loads(saved_facts.read_text()) | {"reused": True}
        else:
            side = HnswlibSide(ds, insert_order=heap_order, threads=2, m=args.m,
                               ef_construction=args.ef_construction)
            facts["hnswlib_build"] = {"seconds": round(side.build_seconds, 1), "threads": side.threads,
                                      "memory_gib_rss_anon_delta": round(side.memory_gib, 2)}
            side.index.save_index(str(saved))
            saved_facts.write_text(json.dumps(facts["hnswlib_build"]))
        log(f"hnswlib built: {facts['hnswlib_build']}")
        for k in args.ks:
            for ef_value in sorted({ef_for(k, f) for f in (1.0, args.ef_factor)}):
                stats, out = side.query(rows, "global", k, ef_value)
                rec = [recall(o, t, k) for o, t in zip(out, truth["global"])]
                res.add(k=k, scope="global", engine="hnswlib", strategy=f"ef={ef_value}", stats=stats, recalls=rec)
            ef = ef_for(k, args.ef_factor)
            for scope in ("level2", "level3"):
                stats, out = side.query(rows, scope, k, ef)
                rec = [recall(o, t, k) for o, t in zip(out, truth[scope])]
                res.add(k=k, scope=scope, engine="hnswlib", strategy=f"filter callable ef={ef}", stats=stats,
                        recalls=rec, sizes=[q[f"size_{scope}"] for q in queries])
        del side
        checkpoint(res, facts)

    # ---- real app (API + selector)
    if args.api != "off":
        try:
            from bench.scale import app as app_bench
        except ImportError as error:
            app_bench = None
            facts["api"] = f"not run: {error}"
        if app_bench is not None:
            ok, why = app_bench.available()
            if ok or args.api == "on":
                try:
                    app_bench.run(ds=ds, rows=rows, queries=queries, truth=truth, res=res, facts=facts, args=args,
                                  heap_order=heap_order, meta=meta, dsn=dsn)
                except Exception as error:  # the app is being written concurrently: keep the other figures
                    import traceback

                    traceback.print_exc()
                    facts["api"] = f"failed: {type(error).__name__}: {error}"
            else:
                facts["api"] = f"not run: {why}"

    facts["peak_rss_python_gib"] = round(peak_rss_gib(), 2)
    facts["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print_report(res, facts)
    path = OUT / f"scale_n{ds.n}.json"
    path.write_text(json.dumps({"facts": facts, "rows": res.rows}, indent=1, default=str))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
