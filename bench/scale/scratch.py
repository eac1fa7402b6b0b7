"""Scratch schema in labelapp_bench: load, HNSW builds and the query strategies being compared.

Table: (product_id bigint primary key, level2_id bigint, level3_id bigint, embedding halfvec|vector(dim)),
UNLOGGED (no WAL: load and build are faster than on a logged table; the query side is unaffected).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from bench.scale.common import MemorySampler, Meta, connect, execute, log, scalar
from bench.scale.pgload import copy_rows
from bench.scale.synth import Dataset


def table_exists(conn, table: str) -> bool:
    return bool(scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", [table]))


def index_exists(conn, index: str) -> bool:
    return bool(scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", [index]))


def relation_sizes(conn, table: str) -> dict:
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT pg_relation_size(c.oid), coalesce(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0),
                   pg_total_relation_size(c.oid), pg_indexes_size(c.oid)
            FROM pg_class c WHERE c.oid = %s::regclass
            """,
            [table],
        )
        heap, toast, total, indexes = cursor.fetchone()
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid = %s::regclass ORDER BY 1",
            [table],
        )
        per_index = dict(cursor.fetchall())
    return {"heap": heap, "toast": toast, "total": total, "indexes": indexes, "per_index": per_index}


def load_table(conn, meta: Meta, *, table: str, kind: str, ds: Dataset, rows: np.ndarray, storage: str,
               reuse: bool) -> dict:
    """Create and fill `table` with dataset rows `rows` (in that heap order); return timing info."""
    key = f"load:{table}"
    if reuse and table_exists(conn, table) and meta.get(key):
        info = meta.get(key)
        if info.get("rows") == len(rows) and info.get("storage") == storage and info.get("kind") == kind:
            log(f"reuse {table} ({len(rows):,} rows)")
            return info
    execute(conn, f"DROP TABLE IF EXISTS {table} CASCADE")
    meta.drop(f"build:{table}")
    execute(conn, f"CREATE UNLOGGED TABLE {table} (product_id bigint NOT NULL, level2_id bigint NOT NULL, "
                  f"level3_id bigint NOT NULL, embedding {kind}({ds.dim}) NOT NULL)")
    if storage == "plain":
        execute(conn, f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE PLAIN")
    log(f"COPY {len(rows):,} rows into {table} ({kind}, storage {storage}) ...")
    with conn.cursor() as cursor:
        copy_seconds = copy_rows(cursor, table, ["product_id", "level2_id", "level3_id", "embedding"], rows,
                                 ds.product_ids, [ds.level2, ds.level3], ds.vectors, kind, log=log)
    started = time.perf_counter()
    execute(conn, f"ALTER TABLE {table} ADD PRIMARY KEY (product_id)")
    execute(conn, f"CREATE INDEX ON {table} (level2_id)")
    execute(conn, f"CREATE INDEX ON {table} (level3_id)")
    execute(conn, f"VACUUM (ANALYZE) {table}")
    info = {"rows": int(len(rows)), "kind": kind, "storage": storage, "copy_s": round(copy_seconds, 1),
            "btree_vacuum_s": round(time.perf_counter() - started, 1)}
    meta.put(key, info)
    log(f"loaded {table}: {info}")
    return info


def _progress(dsn: str, stop: threading.Event, label: str, every_s: float = 60.0) -> None:
    conn = connect(dsn)
    try:
        while not stop.wait(every_s):
            with conn.cursor() as cursor:
                cursor.execute("SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total "
                               "FROM pg_stat_progress_create_index")
                rows = cursor.fetchall()
            if rows:
                log(f"  {label}: {rows[0]}")
    finally:
        conn.close()


def build_hnsw(conn, dsn: str, meta: Meta, *, table: str, index: str, kind: str, where: str | None = None,
               m: int = 16, ef_construction: int = 64, maintenance_work_mem: str = "8GB",
               parallel_workers: int = 2, reuse: bool) -> dict:
    key = f"build:{table}:{index}"
    stored = meta.get(key) if reuse and index_exists(conn, index) else None
    if stored and stored.get("m") == m and stored.get("ef_construction") == ef_construction:
        return stored
    execute(conn, f"DROP INDEX IF EXISTS {index}")
    execute(conn, f"SET maintenance_work_mem = '{maintenance_work_mem}'")
    execute(conn, f"SET max_parallel_maintenance_workers = {parallel_workers}")
    notices_before = len(conn.notices)
    clause = f" WHERE {where}" if where else ""
    sql = (f"CREATE INDEX {index} ON {table} USING hnsw (embedding {kind}_cosine_ops) "
           f"WITH (m = {m}, ef_construction = {ef_construction}){clause}")
    log(f"build: {sql}")
    stop = threading.Event()
    watcher = threading.Thread(target=_progress, args=(dsn, stop, index), daemon=True)
    watcher.start()
    with MemorySampler() as memory:
        started = time.perf_counter()
        execute(conn, sql)
        seconds = time.perf_counter() - started
    stop.set()
    execute(conn, "RESET maintenance_work_mem")
    execute(conn, "RESET max_parallel_maintenance_workers")
    rows = scalar(conn, f"SELECT count(*) FROM {table}{clause}")
    info = {
        "seconds": round(seconds, 1), "rows": int(rows), "size": int(scalar(conn, "SELECT pg_relation_size(%s)", [index])),
        "m": m, "ef_construction": ef_construction, "maintenance_work_mem": maintenance_work_mem,
        "parallel_workers": parallel_workers, "notices": [n.strip() for n in conn.notices[notices_before:]],
        "memory": memory.as_dict(),
    }
    meta.put(key, info)
    log(f"built {index}: {info}")
    return info


# ---------------------------------------------------------------------------------------------------------
# Strategies. Every query gets the query vector from the table itself (one round trip, as the API would with
# the product's stored embedding) and excludes the query product.

def _where(scope: str, with_parent: bool = False) -> str:
    if scope == "level2":
        return "level2_id = %(l2)s AND "
    if scope == "level3x":  # adversarial: another level-3 category than the query's own
        return "level3_id = %(l3x)s AND "
    if scope == "level3":
        return ("level2_id = %(l2)s AND level3_id = %(l3)s AND " if with_parent else "level3_id = %(l3)s AND ")
    return ""


def sql_hnsw(table: str, scope: str, *, resort: bool, with_parent: bool = False) -> str:
    qvec = f"(SELECT embedding FROM {table} WHERE product_id = %(pid)s)"
    where = _where(scope, with_parent)
    if not resort:
        return (f"SELECT product_id FROM {table} WHERE {where}product_id <> %(pid)s "
                f"ORDER BY embedding <=> {qvec} LIMIT %(k)s")
    return (f"WITH r AS MATERIALIZED (SELECT product_id, embedding <=> {qvec} AS d FROM {table} "
            f"WHERE {where}product_id <> %(pid)s ORDER BY d LIMIT %(k)s) SELECT product_id FROM r ORDER BY d")


def sql_exact(table: str, scope: str) -> str:
    """`+ 0` hides the ORDER BY expression from the HNSW opclass: a top-N sort over the scope's rows."""
    qvec = f"(SELECT embedding FROM {table} WHERE product_id = %(pid)s)"
    return (f"SELECT product_id FROM {table} WHERE {_where(scope)}product_id <> %(pid)s "
            f"ORDER BY (embedding <=> {qvec}) + 0 LIMIT %(k)s")


def set_many(conn, settings: dict) -> None:
    with conn.cursor() as cursor:
        for name, value in settings.items():
            cursor.execute(f"SET {name} = %s", [str(value)])


def reset_many(conn, names) -> None:
    with conn.cursor() as cursor:
        for name in names:
            cursor.execute(f"RESET {name}")


def plan_summary(conn, sql: str, params: dict) -> str:
    """Names of the scan nodes the planner picked (EXPLAIN without ANALYZE)."""
    with conn.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0][0]["Plan"]
    found: list[str] = []

    def walk(node) -> None:
        if "Index Name" in node:
            found.append(f"{node['Node Type']}:{node['Index Name']}")
        elif node["Node Type"] in ("Seq Scan", "Bitmap Heap Scan", "Parallel Seq Scan"):
            found.append(node["Node Type"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return "+".join(found)


def run_queries(conn, sql_for, queries: list[dict], k: int, *, repeat_warm: bool = True) -> tuple[list, list]:
    """Run each query (sql_for(query) -> sql); return (latencies ms, result id lists). Warm-up pass first."""
    with conn.cursor() as cursor:
        if repeat_warm:
            for query in queries:
                cursor.execute(sql_for(query), query | {"k": k})
                cursor.fetchall()
        latencies, results = [], []
        for query in queries:
            sql = sql_for(query)
            started = time.perf_counter()
            cursor.execute(sql, query | {"k": k})
            rows = cursor.fetchall()
            latencies.append((time.perf_counter() - started) * 1000)
            results.append([row[0] for row in rows])
    return latencies, results
