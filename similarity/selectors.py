"""Reads of the similarity app: nearest neighbours in pgvector, job progress, judgements and their precision.

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
row scopes cost 60-200 ms at p95 on 2 cores while the filtered graph walk stayed under 15 ms at recall 0.995. The count reads at most MAX + 1 btree entries (`LIMIT`
inside the count) and is cached per generation; N is the planner's estimate (pg_class.reltuples). Should the walk
stop with fewer than k rows although the scope holds more (max_scan_tuples reached), the query falls back to
the exact scan, so a filtered query returns exactly k rows whenever k exist.

The category a product is filtered by is its effective category (`Product.category`): the human label if any,
else the active model's prediction, else the legacy rule's or the raw feed category; `level2` / `level3` are
that category's ancestors at depth 2 and 3.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from labelapp.models import Category, CategorySource, Product
from similarity.models import (
    EmbeddingFailure,
    EmbeddingJob,
    EmbeddingKind,
    EmbeddingSpace,
    ImageEmbedding,
    JobStatus,
    Modality,
    NeighbourCache,
    Scope,
    SimilarityJudgement,
    TextEmbedding,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class SimilaritySettings:
    """The similarity settings with their defaults (config/settings.py may set any of them)."""

    model_version: str
    backbone: str
    text_model_version: str
    embed_batch_size: int
    embed_workers: int
    job_chunk_size: int
    hybrid_text_weight: float
    exact_scan_min_rows: int
    exact_scan_max_rows: int
    exact_scan_cost_ratio: float
    max_scan_tuples: int
    cache_timeout_s: int
    text_dim: int


def similarity_settings() -> SimilaritySettings:
    """Return the similarity settings; SIMILARITY_MODEL_VERSION defaults to the embedder's own version."""
    from similarity.core.embedder import BACKBONES, DEFAULT_BACKBONE

    backbone = getattr(settings, "SIMILARITY_BACKBONE", DEFAULT_BACKBONE)
    default_version = BACKBONES[backbone].model_version if backbone in BACKBONES else ""
    return SimilaritySettings(
        model_version=getattr(settings, "SIMILARITY_MODEL_VERSION", "") or default_version,
        backbone=backbone,
        text_model_version=getattr(settings, "SIMILARITY_TEXT_MODEL_VERSION", ""),
        embed_batch_size=int(getattr(settings, "SIMILARITY_EMBED_BATCH_SIZE", 64)),
        embed_workers=int(getattr(settings, "SIMILARITY_EMBED_WORKERS", 2)),
        job_chunk_size=int(getattr(settings, "SIMILARITY_JOB_CHUNK_SIZE", 512)),
        hybrid_text_weight=float(getattr(settings, "SIMILARITY_HYBRID_TEXT_WEIGHT", 0.3)),
        exact_scan_min_rows=int(getattr(settings, "SIMILARITY_EXACT_SCAN_MIN_ROWS", 1000)),
        exact_scan_max_rows=int(getattr(settings, "SIMILARITY_EXACT_SCAN_MAX_ROWS", 3000)),
        exact_scan_cost_ratio=float(getattr(settings, "SIMILARITY_EXACT_SCAN_COST_RATIO", 6.0)),
        max_scan_tuples=int(getattr(settings, "SIMILARITY_MAX_SCAN_TUPLES", 20000)),
        cache_timeout_s=int(getattr(settings, "SIMILARITY_CACHE_TIMEOUT_S", 600)),
        text_dim=int(getattr(settings, "SIMILARITY_TEXT_DIM", 256)),
    )


def text_model_version_active() -> str:
    """Return the text model in use: the setting, else the newest successfully built one ("" when none)."""
    configured = similarity_settings().text_model_version
    if configured:
        return configured
    return (
        EmbeddingJob.objects.filter(kind=EmbeddingKind.TEXT, status=JobStatus.SUCCEEDED)
        .exclude(model_version="")
        .order_by("-finished_at", "-id")
        .values_list("model_version", flat=True)
        .first()
        or ""
    )


# --------------------------------------------------------------------------------------------------------------
# Errors a similarity query can end in (the API turns each into a 4xx)


class SimilarityError(Exception):
    """A similarity query that cannot be answered as asked; `code` is stable for API clients."""

    code = "similarity_error"


class ProductNotFound(SimilarityError):
    code = "product_not_found"


class ExternalIdAmbiguous(SimilarityError):
    code = "external_id_ambiguous"

    def __init__(self, external_id: str, sources: list[str]):
        self.sources = sources
        super().__init__(
            f"external id {external_id!r} exists in several sources ({', '.join(sources)}); "
            "pass ?source=<one of them>."
        )


class EmbeddingMissing(SimilarityError):
    """The query product has no vector of the asked modality (yet): a state, not a bad request."""

    code = "embedding_missing"


class ScopeUnavailable(SimilarityError):
    code = "scope_unavailable"


# --------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ProductBrief:
    """What a similarity answer tells about a product; `image_url` is site-relative or an absolute URL."""

    id: int
    source: str
    external_id: str
    title: str
    image_url: str | None
    category_id: int | None
    category_path: str
    category_source: str
    level2_id: int | None
    level3_id: int | None


@dataclass(frozen=True)
class Neighbour:
    rank: int
    product: ProductBrief
    score: float
    image_score: float | None = None
    text_score: float | None = None


@dataclass(frozen=True)
class SearchTrace:
    """How a neighbour query was answered, for logs, the recall check and the API's `meta`."""

    strategy: str  # "hnsw", "exact", "hnsw+exact" (fallback), "cache" (NeighbourCache), "hybrid"
    candidates: int | None  # rows in scope, capped at SIMILARITY_EXACT_SCAN_MAX_ROWS + 1; None when not counted
    ef_search: int | None


@dataclass(frozen=True)
class SimilarResult:
    query: ProductBrief
    neighbours: list[Neighbour]
    k: int
    scope: str
    modality: str
    model_version: str
    text_model_version: str
    text_weight: float | None
    trace: SearchTrace
    cached: bool = False


@dataclass(frozen=True)
class Hit:
    product_id: int
    score: float  # cosine similarity, 1 - cosine distance


# --------------------------------------------------------------------------------------------------------------
# Products


def product_by_external_id(*, external_id: str, source: str = "") -> Product:
    """Return the product with this external id (in `source`, when given); raise when none or several."""
    products = Product.objects.filter(external_id=external_id)
    if source:
        products = products.filter(source=source)
    found = list(products.select_related("category").order_by("source")[:50])
    if not found:
        where = f" in source {source!r}" if source else ""
        raise ProductNotFound(f"no product with external id {external_id!r}{where}")
    if len(found) > 1:
        raise ExternalIdAmbiguous(external_id, [product.source for product in found])
    return found[0]


def _image_url(image: str, image_ref: str) -> str | None:
    if image:
        from django.core.files.storage import default_storage

        return default_storage.url(image)
    if image_ref.lower().startswith(("http://", "https://")):
        return image_ref
    return None


_BRIEF_FIELDS = ("id", "source", "external_id", "title", "image", "image_ref", "category_id", "category__full_path",
                 "category_source", "level2_id", "level3_id")


def _brief(row: dict) -> ProductBrief:
    return ProductBrief(
        id=row["id"], source=row["source"], external_id=row["external_id"], title=row["title"],
        image_url=_image_url(row["image"], row["image_ref"]), category_id=row["category_id"],
        category_path=row["category__full_path"] or "", category_source=row["category_source"],
        level2_id=row["level2_id"], level3_id=row["level3_id"],
    )


def product_briefs(*, product_ids: list[int]) -> dict[int, ProductBrief]:
    """Return {id: ProductBrief} for the products (missing ids are left out)."""
    rows = Product.objects.filter(id__in=product_ids).values(*_BRIEF_FIELDS)
    return {row["id"]: _brief(row) for row in rows}


# --------------------------------------------------------------------------------------------------------------
# Embedding spaces and their generation (part of every cache key)


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


# --------------------------------------------------------------------------------------------------------------
# Nearest neighbours


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


# --------------------------------------------------------------------------------------------------------------
# Similar products: the query behind the shoppers' API and the evaluation pages


def _scope_category(product: Product, scope: str) -> int | None:
    if scope == Scope.GLOBAL:
        return None
    category_id = product.level2_id if scope == Scope.LEVEL2 else product.level3_id
    if category_id is None:
        level = "level-2" if scope == Scope.LEVEL2 else "level-3"
        category = f"its category {product.category.full_path!r} is not that deep" if product.category_id else (
            "it has no category yet")
        raise ScopeUnavailable(
            f"product {product.external_id!r} has no {level} category ({category}); use scope=global"
            + (" or scope=level2" if scope == Scope.LEVEL3 and product.level2_id else "") + "."
        )
    return category_id


def _missing_message(*, product: Product, kind: str, model_version: str) -> str:
    if kind == EmbeddingKind.TEXT:
        if not model_version:
            return "No text model has been built yet (manage.py build_text_vectors); use modality=image."
        return (f"Product {product.external_id!r} has no text vector (its title has no known word, or it was "
                "imported after the text vectors were built); use modality=image.")
    if not product.image:
        why = f"it has no image ({product.image_error})" if product.image_error else "it has no image"
    else:
        failure = EmbeddingFailure.objects.filter(product=product, model_version=model_version).first()
        why = f"its image could not be embedded: {failure.reason}" if failure else "its image is not embedded yet"
    return f"Product {product.external_id!r} has no image embedding ({why}); use modality=text."


def _query_vector(*, product: Product, kind: str, model_version: str) -> str:
    vector = embedding_vector(kind=kind, model_version=model_version, product_id=product.id) if model_version else None
    if vector is None:
        raise EmbeddingMissing(_missing_message(product=product, kind=kind, model_version=model_version))
    return vector


def _hits_single(*, product: Product, kind: str, model_version: str, k: int, scope: str, category_id: int | None,
                 generation: int) -> tuple[list[Hit], SearchTrace]:
    vector = _query_vector(product=product, kind=kind, model_version=model_version)
    if kind == EmbeddingKind.IMAGE:
        stored = (NeighbourCache.objects.filter(product=product, model_version=model_version, scope=scope,
                                                generation=generation)
                  .values_list("neighbour_ids", "scores").first())
        if stored and len(stored[0]) >= k:
            hits = [Hit(product_id=pid, score=score) for pid, score in zip(stored[0][:k], stored[1][:k])]
            return hits, SearchTrace(strategy="cache", candidates=None, ef_search=None)
    return embedding_nearest(kind=kind, model_version=model_version, vector=vector, k=k, scope=scope,
                             category_id=category_id, exclude_product_id=product.id, generation=generation)


def _hits_hybrid(*, product: Product, image_version: str, text_version: str, k: int, scope: str,
                 category_id: int | None, text_weight: float,
                 generations: dict[str, int]) -> tuple[list[Hit], dict[int, tuple[float, float]]]:
    """Blend image and text scores over the union of both modalities' top-2k candidates.

    A candidate without a vector in one modality scores 0 there (cosine of an unrelated direction).
    """
    from similarity.core.text import hybrid_scores

    image_vector = _query_vector(product=product, kind=EmbeddingKind.IMAGE, model_version=image_version)
    text_vector = _query_vector(product=product, kind=EmbeddingKind.TEXT, model_version=text_version)
    pool = min(400, 2 * k)
    image_hits, _ = embedding_nearest(kind=EmbeddingKind.IMAGE, model_version=image_version, vector=image_vector,
                                      k=pool, scope=scope, category_id=category_id, exclude_product_id=product.id,
                                      generation=generations.get(image_version))
    text_hits, _ = embedding_nearest(kind=EmbeddingKind.TEXT, model_version=text_version, vector=text_vector,
                                     k=pool, scope=scope, category_id=category_id, exclude_product_id=product.id,
                                     generation=generations.get(text_version))
    union = sorted({hit.product_id for hit in image_hits} | {hit.product_id for hit in text_hits})
    image_scores = {hit.product_id: hit.score for hit in image_hits}
    text_scores = {hit.product_id: hit.score for hit in text_hits}
    missing_image = [pid for pid in union if pid not in image_scores]
    missing_text = [pid for pid in union if pid not in text_scores]
    image_scores |= embedding_scores(kind=EmbeddingKind.IMAGE, model_version=image_version, vector=image_vector,
                                     product_ids=missing_image)
    text_scores |= embedding_scores(kind=EmbeddingKind.TEXT, model_version=text_version, vector=text_vector,
                                    product_ids=missing_text)
    image_array = np.array([image_scores.get(pid, 0.0) for pid in union], dtype=np.float32)
    text_array = np.array([text_scores.get(pid, 0.0) for pid in union], dtype=np.float32)
    blended = hybrid_scores(image_scores=image_array, text_scores=text_array, text_weight=text_weight)
    order = sorted(range(len(union)), key=lambda i: (-float(blended[i]), union[i]))[:k]
    hits = [Hit(product_id=union[i], score=float(blended[i])) for i in order]
    parts = {union[i]: (float(image_array[i]), float(text_array[i])) for i in order}
    return hits, parts


def _cache_key(*, product_id: int, category_id: int | None, k: int, scope: str, modality: str,
               text_weight: float | None, versions: dict[str, int]) -> str:
    spaces = ";".join(f"{version}@{generation}" for version, generation in sorted(versions.items()))
    raw = f"{product_id}|{category_id}|{k}|{scope}|{modality}|{text_weight}|{spaces}"
    return "similarity:similar:v1:" + hashlib.sha1(raw.encode()).hexdigest()


def product_similar_list(*, product: Product, k: int = 20, scope: str = Scope.LEVEL2,
                         modality: str = Modality.IMAGE, text_weight: float | None = None,
                         model_version: str | None = None, use_cache: bool = True) -> SimilarResult:
    """Return the product's k most similar products in scope, best first, with cosine-similarity scores.

    Answers are cached under a key holding the generation of each embedding space used, so writing vectors or
    syncing categories (which bump it) invalidates them. Raise ScopeUnavailable when the product has no
    category at the scope's level, EmbeddingMissing when it has no vector of the modality.
    """
    config = similarity_settings()
    image_version = model_version or config.model_version
    text_version = text_model_version_active() if modality != Modality.IMAGE else ""
    weight = None
    if modality == Modality.HYBRID:
        weight = config.hybrid_text_weight if text_weight is None else text_weight
    category_id = _scope_category(product, scope)
    used = [v for v in (image_version if modality != Modality.TEXT else "", text_version) if v]
    generations = embedding_generations(model_versions=used)
    # The scope's category is in the key: a product moved to another category asks another question, even
    # before embeddings_sync_categories bumps the generation.
    key = _cache_key(product_id=product.id, category_id=category_id, k=k, scope=scope, modality=modality,
                     text_weight=weight, versions=generations)
    if use_cache:
        found = cache.get(key)
        if found is not None:
            return replace(found, cached=True)

    parts: dict[int, tuple[float, float]] = {}
    if modality == Modality.HYBRID:
        hits, parts = _hits_hybrid(product=product, image_version=image_version, text_version=text_version, k=k,
                                   scope=scope, category_id=category_id, text_weight=weight,
                                   generations=generations)
        trace = SearchTrace(strategy="hybrid", candidates=None, ef_search=ef_search_for(min(400, 2 * k)))
    else:
        kind = EmbeddingKind.IMAGE if modality == Modality.IMAGE else EmbeddingKind.TEXT
        version = image_version if kind == EmbeddingKind.IMAGE else text_version
        hits, trace = _hits_single(product=product, kind=kind, model_version=version, k=k, scope=scope,
                                   category_id=category_id, generation=generations.get(version, 0))
    briefs = product_briefs(product_ids=[hit.product_id for hit in hits] + [product.id])
    neighbours = []
    for hit in hits:
        if hit.product_id not in briefs:  # deleted since the vectors were read
            continue
        image_score, text_score = parts.get(hit.product_id, (None, None))
        neighbours.append(Neighbour(rank=len(neighbours) + 1, product=briefs[hit.product_id], score=hit.score,
                                    image_score=image_score, text_score=text_score))
    result = SimilarResult(
        query=briefs[product.id], neighbours=neighbours, k=k, scope=scope, modality=modality,
        model_version=image_version if modality != Modality.TEXT else "", text_model_version=text_version,
        text_weight=weight, trace=trace,
    )
    if use_cache:
        cache.set(key, result, timeout=config.cache_timeout_s)
    return result


# --------------------------------------------------------------------------------------------------------------
# Jobs and coverage


def embedding_job_list(*, kind: str = "", limit: int = 50) -> QuerySet[EmbeddingJob]:
    """Return the newest embedding jobs."""
    qs = EmbeddingJob.objects.select_related("created_by").defer("product_ids")
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-created_at")[:limit]


def embedding_failure_list(*, model_version: str, limit: int = 100) -> QuerySet[EmbeddingFailure]:
    """Return the newest image failures of a model version with their product."""
    return (EmbeddingFailure.objects.filter(model_version=model_version).select_related("product")
            .order_by("-created_at")[:limit])


@dataclass(frozen=True)
class EmbeddingCoverage:
    model_version: str
    products_with_image: int
    embedded: int
    failed: int
    text_model_version: str
    text_embedded: int


def embedding_coverage() -> EmbeddingCoverage:
    """Return how much of the catalogue the active image and text models cover."""
    config = similarity_settings()
    text_version = text_model_version_active()
    return EmbeddingCoverage(
        model_version=config.model_version,
        products_with_image=Product.objects.exclude(image="").count(),
        embedded=ImageEmbedding.objects.filter(model_version=config.model_version).count(),
        failed=EmbeddingFailure.objects.filter(model_version=config.model_version).count(),
        text_model_version=text_version,
        text_embedded=TextEmbedding.objects.filter(model_version=text_version).count() if text_version else 0,
    )


# --------------------------------------------------------------------------------------------------------------
# Evaluation


def evaluation_product_search(*, q: str, model_version: str, limit: int = 24) -> QuerySet[Product]:
    """Return products with an image embedding whose title, brand or external id matches `q`."""
    embedded = ImageEmbedding.objects.filter(model_version=model_version, product_id=OuterRef("pk"))
    qs = Product.objects.filter(Exists(embedded)).select_related("category")
    if q:
        qs = qs.filter(Q(title__icontains=q) | Q(external_id=q) | Q(brand__iexact=q))
    return qs.order_by("id")[:limit]


def evaluation_product_random(*, model_version: str, seed: int) -> Product | None:
    """Return a product with an image embedding, drawn uniformly by `seed` (None when nothing is embedded)."""
    rows = ImageEmbedding.objects.filter(model_version=model_version)
    count = rows.count()
    if not count:
        return None
    product_id = rows.order_by("id").values_list("product_id", flat=True)[seed % count]
    return Product.objects.select_related("category").get(pk=product_id)


def evaluation_version(*, modality: str) -> str:
    """Return the version judgements of a modality are recorded under: the image or text model, or both joined
    by "+" for hybrid (whose neighbours depend on the two)."""
    image, text = similarity_settings().model_version, text_model_version_active()
    return {Modality.IMAGE: image, Modality.TEXT: text}.get(modality, f"{image}+{text}")


def judgement_map(*, query_id: int, scope: str, modality: str, model_version: str, reviewer_id: int) -> dict[int, bool]:
    """Return {neighbour_id: is_similar} of one reviewer's judgements for one query and setting."""
    return dict(
        SimilarityJudgement.objects.filter(query_id=query_id, scope=scope, modality=modality,
                                           model_version=model_version, reviewer_id=reviewer_id)
        .values_list("neighbour_id", "is_similar")
    )


@dataclass(frozen=True)
class CategoryPrecision:
    category_id: int | None
    name: str
    full_path: str
    judged: int
    similar: int

    @property
    def precision(self) -> float:
        return self.similar / self.judged if self.judged else 0.0

    @property
    def count(self) -> int:
        return self.judged


def judgement_precision_by_category(*, model_version: str, modality: str, scope: str,
                                    k: int = 10) -> list[CategoryPrecision]:
    """Return precision@k from reviewers' judgements, per level-3 category of the query, largest first.

    precision@k = judgements "similar" / judgements, over neighbours judged at rank <= k (each reviewer's
    verdict counts once).
    """
    rows = (
        SimilarityJudgement.objects.filter(model_version=model_version, modality=modality, scope=scope, rank__lte=k)
        .values("query__level3_id", "query__level3__name", "query__level3__full_path")
        .annotate(judged=Count("id"), similar=Count("id", filter=Q(is_similar=True)))
        .order_by("-judged", "query__level3__full_path")
    )
    return [
        CategoryPrecision(category_id=row["query__level3_id"], name=row["query__level3__name"] or "(no level-3)",
                          full_path=row["query__level3__full_path"] or "", judged=row["judged"],
                          similar=row["similar"])
        for row in rows
    ]


def precision_population(*, kind: str, model_version: str) -> tuple[str, QuerySet[Product]]:
    """Return which products an automatic precision is computed over, and them.

    Products with a human label when any of them has a vector ("labelled"), else every product with a level-3
    category ("categorised"); either way only products with a vector of the model version.
    """
    model = ImageEmbedding if kind == EmbeddingKind.IMAGE else TextEmbedding
    embedded = model.objects.filter(model_version=model_version, product_id=OuterRef("pk"))
    base = Product.objects.filter(Exists(embedded), level3__isnull=False)
    labelled = base.filter(category_source=CategorySource.LABEL)
    if labelled.exists():
        return "labelled", labelled
    return "categorised", base


def category_names(*, category_ids: list[int]) -> dict[int, str]:
    """Return {id: full path} of categories."""
    return dict(Category.objects.filter(id__in=category_ids).values_list("id", "full_path"))


# --------------------------------------------------------------------------------------------------------------
# Index quality


@dataclass(frozen=True)
class RecallRow:
    scope: str
    k: int
    queries: int
    recall_hnsw: float  # the graph walk, forced, against the exact scan
    recall_auto: float  # what queries actually get (exact for small scopes), against the exact scan
    auto_exact_share: float  # share of the queries the automatic choice sent to the exact scan
    ef_search: int
    hnsw_ms_median: float
    exact_ms_median: float


def embedding_recall_measure(*, queries: int = 200, ks: tuple[int, ...] = (10, 100),
                             scopes: tuple[str, ...] = (Scope.LEVEL2, Scope.LEVEL3, Scope.GLOBAL),
                             kind: str = EmbeddingKind.IMAGE, model_version: str | None = None,
                             seed: int = 0) -> list[RecallRow]:
    """Compare the index's answers with exact search for sampled query products; one row per scope and k.

    recall@k = |answer ∩ exact top-k| / |exact top-k|, averaged over the queries.
    """
    import time

    version = model_version or (similarity_settings().model_version if kind == EmbeddingKind.IMAGE
                                else text_model_version_active())
    model = ImageEmbedding if kind == EmbeddingKind.IMAGE else TextEmbedding
    sample = list(
        model.objects.filter(model_version=version)
        .order_by(RawSQL(f"hashint8extended({model._meta.db_table}.product_id, %s)", (seed,)))
        .values_list("product_id", "level2_id", "level3_id")[:queries]
    )
    rows = []
    for scope in scopes:
        for k in ks:
            hnsw_recalls, auto_recalls, exact_times, hnsw_times, auto_exact = [], [], [], [], 0
            for product_id, level2_id, level3_id in sample:
                category_id = {Scope.LEVEL2: level2_id, Scope.LEVEL3: level3_id}.get(scope)
                if scope != Scope.GLOBAL and category_id is None:
                    continue
                vector = embedding_vector(kind=kind, model_version=version, product_id=product_id)
                arguments = dict(kind=kind, model_version=version, vector=vector, k=k, scope=scope,
                                 category_id=category_id, exclude_product_id=product_id)
                tick = time.perf_counter()
                exact, _ = embedding_nearest(**arguments, strategy="exact")
                exact_times.append(time.perf_counter() - tick)
                tick = time.perf_counter()
                walked, _ = embedding_nearest(**arguments, strategy="hnsw")
                hnsw_times.append(time.perf_counter() - tick)
                auto, trace = embedding_nearest(**arguments, strategy="auto")
                truth = {hit.product_id for hit in exact}
                if not truth:
                    continue
                auto_exact += trace.strategy == "exact"
                hnsw_recalls.append(len(truth & {hit.product_id for hit in walked}) / len(truth))
                auto_recalls.append(len(truth & {hit.product_id for hit in auto}) / len(truth))
            n = len(hnsw_recalls)
            rows.append(RecallRow(
                scope=scope, k=k, queries=n,
                recall_hnsw=float(np.mean(hnsw_recalls)) if n else float("nan"),
                recall_auto=float(np.mean(auto_recalls)) if n else float("nan"),
                auto_exact_share=auto_exact / n if n else 0.0, ef_search=ef_search_for(k),
                hnsw_ms_median=float(np.median(hnsw_times) * 1000) if hnsw_times else float("nan"),
                exact_ms_median=float(np.median(exact_times) * 1000) if exact_times else float("nan"),
            ))
    return rows
