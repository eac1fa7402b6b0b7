"""The real similarity app at scale: Django models on labelapp_bench, the selector's SQL, and the API.

Loads Category (Myntra masterCategory > subCategory > articleType), n lightweight Products (raw = a few bytes of
JSON) and their ImageEmbedding rows by COPY into the app's own tables (after `migrate` on labelapp_bench), builds
the app's HNSW index (dropped before the load, recreated with the migration's definition and timed), then times

* the API: GET /api/v1/products/{external_id}/similar/?k=&scope= through Django's test Client in-process
  (token auth, DummyCache so that every answer is computed, none served from the answer cache, DEBUG off), and
* the selector alone: selectors.embedding_nearest() (the candidate count + the neighbour SQL),

with recall@k against the same exact float32 ground truth as the scratch tables.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np

from bench.scale.common import MemorySampler, loadavg, log, summarize
from bench.scale.inproc import recall
from bench.scale.pgload import COPY_HEADER, COPY_TRAILER, _ChunkReader
from bench.scale.synth import Dataset

REPO = Path(__file__).resolve().parents[2]
SOURCE = "bench"
PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 in Unix microseconds


def _setup_django(dsn: str) -> None:
    os.environ["DATABASE_URL"] = dsn.replace("postgresql://", "postgres://")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["SIMILAR_API_RATE"] = "100000000/min"
    import django

    django.setup()


def available() -> tuple[bool, str]:
    """Whether the real app has what the bench needs (models, selector, API route)."""
    needed = [REPO / "similarity" / "models.py", REPO / "similarity" / "selectors" / "search.py",
              REPO / "similarity" / "apis.py"]
    missing = [str(path.relative_to(REPO)) for path in needed if not path.exists()]
    if missing:
        return False, f"missing {', '.join(missing)}"
    try:
        _setup_django("postgresql://labelapp@127.0.0.1:54329/labelapp_bench")
        from django.urls import NoReverseMatch, reverse

        reverse("api-product-similar", kwargs={"external_id": "x"})
        from similarity.selectors import search, similar

        if not hasattr(similar, "product_similar_list") or not hasattr(search, "embedding_nearest"):
            return False, "similarity.selectors lacks similar.product_similar_list / search.embedding_nearest"
    except NoReverseMatch:
        return False, "URL 'api-product-similar' is not routed (config/urls.py)"
    except Exception as error:  # the app is being written concurrently: say why and carry on
        return False, f"{type(error).__name__}: {error}"
    return True, ""


# ---------------------------------------------------------------------------------------------------------
# Load


def _master_of_level2() -> dict[str, str]:
    import csv
    from collections import Counter

    counts: dict[str, Counter] = {}
    with open("/work/shared/datasets/myntra-fashion/styles_clean.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            counts.setdefault(row["subCategory"], Counter())[row["masterCategory"]] += 1
    return {sub: counter.most_common(1)[0][0] for sub, counter in counts.items()}


def _categories(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Ensure the category tree; return arrays mapping bench level2 / level3 ids to Category ids."""
    from labelapp.catalogue.services.categories import category_path_ensure

    master = _master_of_level2()
    cache: dict = {}
    level2_map = np.zeros(len(ds.level2_names) + 1, dtype=np.int64)
    level3_map = np.zeros(len(ds.level3_names) + 1, dtype=np.int64)
    for l3_id, name in enumerate(ds.level3_names, start=1):
        sub, article = name.split("/", 1)
        node = category_path_ensure(names=[master.get(sub, "Other"), sub, article], cache=cache)
        level3_map[l3_id] = node.id
        level2_map[ds.level2_names.index(sub) + 1] = node.level2_id
    return level2_map, level3_map


def _text_copy(cursor, table: str, columns: list[str], lines) -> float:
    started = time.perf_counter()
    reader = io.BufferedReader(_ChunkReader(lines), buffer_size=1 << 20)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", reader)
    return time.perf_counter() - started


def _embedding_rows(pk, model_version: bytes, level2, level3, now_us: int, vectors: np.ndarray,
                    fingerprint: bytes) -> bytes:
    dim = vectors.shape[1]
    dtype = np.dtype([
        ("nf", ">i2"),
        ("l0", ">i4"), ("product_id", ">i8"),
        ("l1", ">i4"), ("model_version", f"S{len(model_version)}"),
        ("l2", ">i4"), ("level2_id", ">i8"),
        ("l3", ">i4"), ("level3_id", ">i8"),
        ("l4", ">i4"), ("created_at", ">i8"),
        ("l5", ">i4"), ("updated_at", ">i8"),
        ("l6", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vec", ">f2", (dim,)),
        ("l7", ">i4"), ("fingerprint", f"S{len(fingerprint)}"),
    ])
    rows = np.empty(len(pk), dtype=dtype)
    rows["nf"] = 8
    rows["l0"], rows["product_id"] = 8, pk
    rows["l1"], rows["model_version"] = len(model_version), model_version
    rows["l2"], rows["level2_id"] = 8, level2
    rows["l3"], rows["level3_id"] = 8, level3
    rows["l4"], rows["created_at"] = 8, now_us
    rows["l5"], rows["updated_at"] = 8, now_us
    rows["l6"], rows["dim"], rows["unused"] = 4 + 2 * dim, dim, 0
    rows["vec"] = vectors.astype(np.float16)
    rows["l7"], rows["fingerprint"] = len(fingerprint), fingerprint
    return rows.tobytes()


def load(ds: Dataset, *, heap_order: np.ndarray, meta, dsn: str, reuse: bool, model_version: str,
         maintenance_work_mem: str, parallel_workers: int, storage: str) -> dict:
    from django.core.management import call_command
    from django.db import connection

    from labelapp.catalogue.models import Product
    from similarity.models import EmbeddingSpace, ImageEmbedding

    info: dict = {}
    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    info["migrate_s"] = round(time.perf_counter() - started, 1)
    table = ImageEmbedding._meta.db_table
    key = f"app:load:{ds.n}:{model_version}"
    stored = meta.get(key)
    have = ImageEmbedding.objects.filter(model_version=model_version).count()
    index_names = _hnsw_index_names(table)
    if reuse and stored and have == ds.n and index_names:
        log(f"reuse app tables ({have:,} image embeddings)")
        return stored | {"reused": True}

    log("app: loading categories / products / image embeddings (COPY)")
    level2_map, level3_map = _categories(ds)
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # no FK triggers while bulk-loading known-good rows
        # Start from empty app tables of the bench source
        cursor.execute(f"DELETE FROM {table} WHERE model_version = %s", [model_version])
        cursor.execute("DELETE FROM labelapp_product WHERE source = %s", [SOURCE])
        # ---- products (ids = bench product ids, so row i is product i + 1)
        pids = ds.product_ids
        cat3 = level3_map[ds.level3]
        cat2 = level2_map[ds.level2]
        names = np.array([name.split("/", 1)[1] for name in ds.level3_names], dtype=object)
        now = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
        columns = ["id", "source", "external_id", "raw", "title", "description", "brand", "category_path", "gender",
                   "size", "currency", "attributes", "image_ref", "image", "image_error", "split", "category_id",
                   "category_source", "level2_id", "level3_id", "created_at", "updated_at"]
        cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'labelapp_product' "
                       "AND is_nullable = 'NO' AND column_default IS NULL")
        required = {row[0] for row in cursor.fetchall()}
        missing = sorted(required - set(columns))
        if missing:
            raise RuntimeError(f"labelapp_product has new NOT NULL columns the bench does not fill: {missing}")

        def product_lines():
            chunk = 50_000
            for start in range(0, ds.n, chunk):
                block = []
                for i in range(start, min(start + chunk, ds.n)):
                    pid = int(pids[i])
                    block.append(
                        f"{pid}\t{SOURCE}\tb{pid}\t{{\"id\": {pid}}}\t{names[ds.level3[i] - 1]} {pid}\t\t\t\t\t\t\t"
                        f"{{}}\t\tproducts/bench/{pid}.jpg\t\tdev\t{cat3[i]}\tfeed\t{cat2[i]}\t{cat3[i]}\t{now}\t{now}\n"
                    )
                yield "".join(block).encode()

        info["products_copy_s"] = round(_text_copy(cursor, "labelapp_product", columns, product_lines()), 1)
        cursor.execute("SELECT setval(pg_get_serial_sequence('labelapp_product', 'id'), "
                       "(SELECT max(id) FROM labelapp_product))")
        log(f"app: {ds.n:,} products in {info['products_copy_s']}s")

        # ---- image embeddings: drop secondary indexes, COPY binary in the same random heap order, rebuild
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
                       "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)", [table, table])
        secondary = cursor.fetchall()
        for name, _ in secondary:
            cursor.execute(f"DROP INDEX {name}")
        if storage == "plain":
            cursor.execute(f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE PLAIN")
        version = model_version.encode()
        now_us = int(time.time() * 1_000_000) - PG_EPOCH_US

        def embedding_chunks():
            yield COPY_HEADER
            chunk = 20_000
            for start in range(0, ds.n, chunk):
                rows = heap_order[start : start + chunk]
                yield _embedding_rows(pids[rows], version, cat2[rows], cat3[rows], now_us,
                                      np.asarray(ds.vectors[rows]), b"bench")
                if (start // chunk) % 10 == 0:
                    log(f"  COPY {table}: {start + len(rows):,}/{ds.n:,}")
            yield COPY_TRAILER

        started = time.perf_counter()
        cursor.copy_expert(
            f"COPY {table} (product_id, model_version, level2_id, level3_id, created_at, updated_at, embedding, "
            "fingerprint) FROM STDIN WITH (FORMAT binary)",
            io.BufferedReader(_ChunkReader(embedding_chunks()), buffer_size=1 << 20),
        )
        info["embeddings_copy_s"] = round(time.perf_counter() - started, 1)
        cursor.execute("SET session_replication_role = DEFAULT")
        log(f"app: {ds.n:,} image embeddings in {info['embeddings_copy_s']}s; rebuilding {len(secondary)} indexes")
        builds = {}
        for name, definition in sorted(secondary, key=lambda item: "hnsw" in item[1]):
            if "hnsw" in definition:
                cursor.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
                cursor.execute(f"SET max_parallel_maintenance_workers = {parallel_workers}")
            started = time.perf_counter()
            with MemorySampler() as memory:
                cursor.execute(definition)
            builds[name] = {"seconds": round(time.perf_counter() - started, 1), "definition": definition}
            if "hnsw" in definition:
                builds[name]["memory"] = memory.as_dict()
                builds[name]["maintenance_work_mem"] = maintenance_work_mem
            log(f"app: built {name} in {builds[name]['seconds']}s")
        cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("ANALYZE labelapp_product")
        cursor.execute("ANALYZE labelapp_category")
    EmbeddingSpace.objects.update_or_create(model_version=model_version,
                                            defaults={"kind": "image", "dim": ds.dim})
    info["index_builds"] = builds
    info["sizes"] = _sizes(table)
    info["rows"] = ds.n
    info["storage"] = storage
    meta.put(key, info)
    assert Product.objects.filter(source=SOURCE).count() == ds.n
    return info


def _hnsw_index_names(table: str) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef ILIKE '%%USING hnsw%%'",
                       [table])
        return [row[0] for row in cursor.fetchall()]


def _sizes(table: str) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s::regclass), pg_total_relation_size(%s::regclass), "
                       "pg_indexes_size(%s::regclass)", [table, table, table])
        heap, total, indexes = cursor.fetchone()
        cursor.execute("SELECT indexname, pg_relation_size(indexname::regclass) FROM pg_indexes WHERE tablename = %s",
                       [table])
        per_index = dict(cursor.fetchall())
    return {"heap": heap, "total": total, "indexes": indexes, "per_index": per_index}


# ---------------------------------------------------------------------------------------------------------
# Measure


def run(*, ds: Dataset, rows: np.ndarray, queries: list[dict], truth: dict, res, facts: dict, args, heap_order,
        meta, dsn: str) -> None:
    _setup_django(dsn)
    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings
    from rest_framework.authtoken.models import Token

    from similarity.selectors.search import embedding_nearest, embedding_vector
    from similarity.selectors.settings import similarity_settings

    model_version = similarity_settings().model_version
    facts["app_load"] = load(ds, heap_order=heap_order, meta=meta, dsn=dsn, reuse=args.reuse,
                             model_version=model_version, maintenance_work_mem=args.maintenance_work_mem,
                             parallel_workers=args.parallel_workers, storage=args.app_storage)
    config = similarity_settings()
    facts["app_settings"] = {k: v for k, v in vars(config).items()} if hasattr(config, "__dict__") else str(config)
    user, _ = get_user_model().objects.get_or_create(username="bench-scale", defaults={"is_staff": True})
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    token, _ = Token.objects.get_or_create(user=user)
    client = Client(HTTP_AUTHORIZATION=f"Token {token.key}", HTTP_HOST="localhost")
    count = args.api_queries or len(queries)
    sample = queries[:count]
    dummy = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    # DEBUG off while timing: the debug cursor would log every SQL statement (DJANGO_DEBUG=1 is only needed for
    # the settings' local defaults).
    with override_settings(CACHES=dummy, ALLOWED_HOSTS=["localhost", "testserver", "127.0.0.1"], DEBUG=False):
        for k in args.ks:
            for scope in ("global", "level2", "level3"):
                url_for = lambda q: f"/api/v1/products/b{q['pid']}/similar/?k={k}&scope={scope}"  # noqa: E731
                for q in sample:  # warm-up pass
                    response = client.get(url_for(q))
                    if response.status_code != 200:
                        raise RuntimeError(f"API {url_for(q)} -> {response.status_code}: {response.content[:300]!r}")
                latencies, recalls, strategies = [], [], {}
                for position, q in enumerate(sample):
                    started = time.perf_counter()
                    response = client.get(url_for(q))
                    body = response.json()
                    latencies.append((time.perf_counter() - started) * 1000)
                    ids = [item["id"] for item in body["neighbours"]]
                    recalls.append(recall(ids, truth[scope][position], k))
                    name = body.get("meta", {}).get("strategy", "?")
                    strategies[name] = strategies.get(name, 0) + 1
                # round trips per request and their share of the time, on a few requests
                from django.db import connection
                from django.test.utils import CaptureQueriesContext

                trips, sql_ms, total_ms = [], [], []
                for q in sample[:20]:
                    with CaptureQueriesContext(connection) as captured:
                        started = time.perf_counter()
                        client.get(url_for(q))
                        total_ms.append((time.perf_counter() - started) * 1000)
                    trips.append(len(captured.captured_queries))
                    sql_ms.append(sum(float(item["time"]) for item in captured.captured_queries) * 1000)
                res.add(k=k, scope=scope, engine="app-API", strategy="GET /similar/ (test Client, no answer cache)",
                        stats=summarize(latencies), recalls=recalls, latencies=latencies,
                        sizes=[q[f"size_{scope}"] if scope != "global" else ds.n for q in sample],
                        extra={"strategies": strategies, "round_trips_per_request": float(np.median(trips)),
                               "sql_share_of_request": round(float(np.sum(sql_ms) / np.sum(total_ms)), 3)})
                # the selector's SQL alone (candidate count + neighbour query), same queries
                vectors = {q["pid"]: embedding_vector(kind="image", model_version=model_version,
                                                      product_id=q["pid"]) for q in sample}
                latencies, recalls, strategies = [], [], {}
                for warm in (True, False):
                    for position, q in enumerate(sample):
                        category = None if scope == "global" else (
                            _category_of(q, scope, facts))
                        started = time.perf_counter()
                        hits, trace = embedding_nearest(
                            kind="image", model_version=model_version, vector=vectors[q["pid"]], k=k, scope=scope,
                            category_id=category, exclude_product_id=q["pid"])
                        if not warm:
                            latencies.append((time.perf_counter() - started) * 1000)
                            recalls.append(recall([hit.product_id for hit in hits], truth[scope][position], k))
                            strategies[trace.strategy] = strategies.get(trace.strategy, 0) + 1
                res.add(k=k, scope=scope, engine="app-SQL", strategy="selectors.embedding_nearest (count + SQL)",
                        stats=summarize(latencies), recalls=recalls, latencies=latencies,
                        sizes=[q[f"size_{scope}"] if scope != "global" else ds.n for q in sample],
                        extra={"strategies": strategies})
    log(f"app measured (load {loadavg()})")


_CATEGORY_CACHE: dict = {}


def _category_of(q: dict, scope: str, facts: dict) -> int:
    from labelapp.catalogue.models import Product

    key = (q["pid"], scope)
    if key not in _CATEGORY_CACHE:
        product = Product.objects.only("level2_id", "level3_id").get(pk=q["pid"])
        _CATEGORY_CACHE[key] = product.level2_id if scope == "level2" else product.level3_id
    return _CATEGORY_CACHE[key]
