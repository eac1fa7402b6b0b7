"""Nearest neighbours in pgvector, stored vectors, and the generation of each embedding space.

How a neighbour query runs (`embedding_nearest`)
------------------------------------------------
Vectors live in one HNSW index (cosine, m=16, ef_construction=64) per table. A scope filter (same level-2 or
level-3 category) is applied to the rows' copies of the product's effective category. Two strategies:

* hnsw — `hnsw.iterative_scan = relaxed_order` (pgvector >= 0.8) keeps walking the graph until `k` rows pass
  the filter (or `hnsw.max_scan_tuples` is reached), with `hnsw.ef_search = max(80, 2k)`; the relaxed results
  are re-ordered by their exact distance.
* exact — a btree lookup of the scope's rows and a sort by exact distance (index scans off, so the planner
  cannot pick the HNSW index): exact by construction.

The choice is per query, by the scope's row count n. An exact scan costs about c_e * n; a filtered graph walk
visits about k / selectivity = k * N / n tuples (N = rows in the index), at about c_h each. Measured on 60,000
halfvec(1280) rows (PLAIN storage) with categories uncorrelated with the vectors, the worst case for a filtered
walk: an exact scan costs about 3 us a row; for k = 20 both cost about 8 ms at n = 2,746, below that the exact
scan wins by far (n = 300: 1.5 against 65 ms), above it the walk does (n = 16,160: 8 against 58 ms); for
k = 100 the two cross between n = 2,746 and 16,160. So c_h / c_e is about 6, and the exact scan is used while
n <= sqrt(6 * k * N), clamped to [SIMILARITY_EXACT_SCAN_MIN_ROWS, SIMILARITY_EXACT_SCAN_MAX_ROWS] (1,000 and
3,000). The cap comes from the 1M-row benchmark (bench/bench_similarity_scale.py): there exact scans of 5k-20k
row scopes cost 60-200 ms at p95 on 2 cores while the filtered graph walk stayed under 15 ms at recall 0.995.
The count reads at most MAX + 1 btree entries (`LIMIT` inside the count) and is cached per generation; N is the
planner's estimate (pg_class.reltuples). Should the walk stop with fewer than k rows although the scope holds
more (max_scan_tuples reached), the query falls back to the exact scan, so a filtered query returns exactly k
rows whenever k exist.

The category a product is filtered by is its effective category (`Product.category`): the human label if any,
else the active model's prediction, else the legacy rule's or the raw feed category; `level2` / `level3` are
that category's ancestors at depth 2 and 3.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction

from similarity.models import EmbeddingKind, EmbeddingSpace, ImageEmbedding, Scope, TextEmbedding
from similarity.selectors.settings import SimilaritySettings, similarity_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    product_id: int
    score: float  # cosine similarity, 1 - cosine distance


@dataclass(frozen=True)
class SearchTrace:
    """How a neighbour query was answered, for logs, the recall check and the API's `meta`."""

    strategy: str  # "hnsw", "exact", "hnsw+exact" (fallback), "cache" (NeighbourCache), "hybrid"
    candidates: int | None  # rows in scope, capped at SIMILARITY_EXACT_SCAN_MAX_ROWS + 1; None when not counted
    ef_search: int | None


def embedding_generations(*, model_versions: list[str]) -> dict[str, int]:
    """Return {model_version: generation}; a version without a space yet has generation 0."""
    found = dict(
        EmbeddingSpace.objects.filter(model_version__in=[v for v in model_versions if v])
        .values_list("model_version", "generation")
    )
    return {version: found.get(version, 0) for version in model_versions}


def _table(kind: str) -> str:
    return (ImageEmbedding if kind == EmbeddingKind.IMAGE else TextEmbedding)._meta.db_table


def embedding_vector(*, kind: str, model_version: str, product_id: int) -> str | None:
    """Return the product's stored vector in pgvector's text form, or None."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT embedding::text FROM {_table(kind)} WHERE model_version = %s AND product_id = %s",
            [model_version, product_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def embedding_vectors(*, kind: str, model_version: str, product_ids: list[int] | None = None,
                      limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (product_ids int64 [n], vectors float32 [n, dim]) of stored vectors, in product id order."""
    model = ImageEmbedding if kind == EmbeddingKind.IMAGE else TextEmbedding
    dim = model._meta.get_field("embedding").dimensions
    sql = f"SELECT product_id, halfvec_send(embedding) FROM {_table(kind)} WHERE model_version = %s"
    params: list = [model_version]
    if product_ids is not None:
        sql += " AND product_id = ANY(%s)"
        params.append(list(product_ids))
    sql += " ORDER BY product_id"
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    vectors = np.zeros((len(rows), dim), dtype=np.float32)
    for index, (_, data) in enumerate(rows):
        # halfvec's binary form: uint16 dim, uint16 unused, then big-endian float16 values.
        vectors[index] = np.frombuffer(bytes(data)[4:], dtype=">f2")
    return ids, vectors





def _fetch_with_settings(sql: str, params: list, values: dict[str, str]) -> list[tuple]:
    """Run one query with planner/pgvector settings that hold for that query only.

    Outside a transaction the settings are SET LOCAL in the query's own transaction and travel with the query in one
    round trip. Inside a caller's transaction (a service, a test) SET LOCAL would outlive the savepoint, so the
    previous values are read first and put back after.
    """
    set_sql = "SELECT " + ", ".join(["set_config(%s, %s, true)"] * len(values))
    set_params = [item for name, value in values.items() for item in (name, str(value))]
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if not nested:
            cursor.execute(f"{set_sql}; {sql}", set_params + params)
            return cursor.fetchall()
        names = list(values)
        cursor.execute("SELECT " + ", ".join(["current_setting(%s, true)"] * len(names)), names)
        previous = cursor.fetchone()
        cursor.execute(f"{set_sql}; {sql}", set_params + params)
        rows = cursor.fetchall()
        restore = [item for name, old in zip(names, previous) if old is not None for item in (name, old)]
        if restore:
            cursor.execute("SELECT " + ", ".join(["set_config(%s, %s, true)"] * (len(restore) // 2)), restore)
        return rows


def _scope_sql(scope: str, *, sargable: bool = True) -> str:
    column = {Scope.LEVEL2: "level2_id", Scope.LEVEL3: "level3_id"}.get(scope)
    if column is None:
        return ""
    return f" AND {column} = %s" if sargable else f" AND ({column} + 0) = %s"


def ef_search_for(k: int) -> int:
    """Return the HNSW candidate-list size used for a top-k query: max(80, 2k), within pgvector's 1..1000.

    At 1M rows, k = 20 reached recall 0.997 with 80 against 0.987 with 40, for under 1 ms more at p95.
    """
    return min(1000, max(80, 2 * k))


def embedding_candidates_count(*, kind: str, model_version: str, scope: str, category_id: int | None,
                               cap: int) -> tuple[int, int]:
    """Return (rows in scope counting at most `cap`, the planner's estimate of the table's rows).

    The count's cost is bounded by `cap`; the table's rows (every version: they share one HNSW graph) come from
    pg_class.reltuples, free and good enough for a cost comparison.
    """
    params: list = [model_version] + ([category_id] if scope != Scope.GLOBAL else []) + [cap, _table(kind)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT count(*) FROM (SELECT 1 FROM {_table(kind)} WHERE model_version = %s"
            f"{_scope_sql(scope)} LIMIT %s) AS capped), "
            "(SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass)",
            params,
        )
        count, rows = cursor.fetchone()
    return count, rows or 0


def exact_scan_limit(*, k: int, index_rows: int, config: SimilaritySettings) -> int:
    """Return the largest scope (rows) for which an exact scan beats a filtered graph walk (module docstring)."""
    balanced = int((config.exact_scan_cost_ratio * k * max(index_rows, 1)) ** 0.5)
    return max(config.exact_scan_min_rows, min(config.exact_scan_max_rows, balanced))


def _nearest_sql(*, kind: str, scope: str, exact: bool) -> str:
    table = _table(kind)
    if exact:
        return (f"SELECT product_id, embedding <=> %s::halfvec AS distance FROM {table} "
                f"WHERE model_version = %s{_scope_sql(scope)} AND product_id <> %s "
                "ORDER BY distance, product_id LIMIT %s")
    # The filters are written so that no btree can serve them: the row count already showed the graph walk to be
    # the cheaper plan, and the planner, misjudging the filter's selectivity, would otherwise read the version's
    # rows through the (model_version, product) index and sort them all. The walk returns rows in roughly
    # ascending distance (relaxed order); the outer query re-sorts them by exact distance, and MATERIALIZED keeps
    # the planner from merging the two ORDER BYs.
    return (f"WITH relaxed AS MATERIALIZED (SELECT product_id, embedding <=> %s::halfvec AS distance FROM {table} "
            f"WHERE (model_version || '') = %s{_scope_sql(scope, sargable=False)} AND product_id <> %s "
            "ORDER BY distance LIMIT %s) "
            "SELECT product_id, distance FROM relaxed ORDER BY distance, product_id")


def _nearest_run(*, kind: str, model_version: str, vector: str, k: int, scope: str, category_id: int | None,
                 exclude_product_id: int, exact: bool, max_scan_tuples: int) -> list[Hit]:
    params: list = [vector, model_version] + ([category_id] if scope != Scope.GLOBAL else []) + [exclude_product_id, k]
    if exact:
        # No index scans: the HNSW index is unusable, the scope's rows come from a bitmap scan of the btree.
        local = {"enable_indexscan": "off"}
    else:
        local = {"enable_seqscan": "off", "hnsw.ef_search": str(ef_search_for(k)),
                 "hnsw.iterative_scan": "relaxed_order", "hnsw.max_scan_tuples": str(max_scan_tuples)}
    rows = _fetch_with_settings(_nearest_sql(kind=kind, scope=scope, exact=exact), params, local)
    return [Hit(product_id=product_id, score=1.0 - float(distance)) for product_id, distance in rows]


def _candidates_cached(*, kind: str, model_version: str, scope: str, category_id: int | None, cap: int,
                       generation: int | None) -> tuple[int, int]:
    if generation is None:
        generation = embedding_generations(model_versions=[model_version])[model_version]
    key = f"similarity:candidates:v2:{kind}:{model_version}:{generation}:{scope}:{category_id}:{cap}"
    found = cache.get(key)
    if found is None:
        found = embedding_candidates_count(kind=kind, model_version=model_version, scope=scope,
                                           category_id=category_id, cap=cap)
        cache.set(key, found, timeout=600)
    return found


def embedding_nearest(*, kind: str, model_version: str, vector: str, k: int, scope: str, category_id: int | None,
                      exclude_product_id: int, strategy: str = "auto",
                      generation: int | None = None) -> tuple[list[Hit], SearchTrace]:
    """Return the k nearest rows to `vector` (pgvector text) in scope, best first, and how they were found.

    `strategy` is "auto" (exact scan for small scopes, HNSW otherwise; see the module docstring), "hnsw" or
    "exact". `generation` (the space's, when the caller has it) saves a lookup.
    """
    config = similarity_settings()
    candidates = None
    exact = strategy == "exact"
    if strategy == "auto":
        candidates, index_rows = _candidates_cached(kind=kind, model_version=model_version, scope=scope,
                                                    category_id=category_id, cap=config.exact_scan_max_rows + 1,
                                                    generation=generation)
        exact = candidates <= exact_scan_limit(k=k, index_rows=index_rows, config=config)
    hits = _nearest_run(kind=kind, model_version=model_version, vector=vector, k=k, scope=scope,
                        category_id=category_id, exclude_product_id=exclude_product_id, exact=exact,
                        max_scan_tuples=config.max_scan_tuples)
    if exact:
        return hits, SearchTrace(strategy="exact", candidates=candidates, ef_search=None)
    if len(hits) < k and strategy == "auto":
        # The walk hit hnsw.max_scan_tuples before k rows passed the filter, though the scope holds more rows.
        logger.warning("HNSW walk returned %d of %d rows in %s %s; falling back to an exact scan",
                       len(hits), k, scope, category_id)
        hits = _nearest_run(kind=kind, model_version=model_version, vector=vector, k=k, scope=scope,
                            category_id=category_id, exclude_product_id=exclude_product_id, exact=True,
                            max_scan_tuples=config.max_scan_tuples)
        return hits, SearchTrace(strategy="hnsw+exact", candidates=candidates, ef_search=ef_search_for(k))
    return hits, SearchTrace(strategy="hnsw", candidates=candidates, ef_search=ef_search_for(k))


def embedding_scores(*, kind: str, model_version: str, vector: str, product_ids: list[int]) -> dict[int, float]:
    """Return {product_id: cosine similarity to `vector`} for those of the products that have a vector."""
    if not product_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT product_id, embedding <=> %s::halfvec FROM {_table(kind)} "
            "WHERE model_version = %s AND product_id = ANY(%s)",
            [vector, model_version, list(product_ids)],
        )
        return {product_id: 1.0 - float(distance) for product_id, distance in cursor.fetchall()}
