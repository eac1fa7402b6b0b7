"""Evaluating neighbours: the products reviewers pick, their judgements and precision, and the index's recall.

recall@k compares what the HNSW index (and the automatic exact/HNSW choice of `embedding_nearest`) returns with
an exact scan, over sampled query products (`manage.py similarity_recall_check`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from labelapp.catalogue.models import Category, CategorySource, Product
from similarity.models import EmbeddingKind, ImageEmbedding, Modality, Scope, SimilarityJudgement, TextEmbedding
from similarity.selectors.search import ef_search_for, embedding_nearest, embedding_vector
from similarity.selectors.settings import similarity_settings, text_model_version_active

# --------------------------------------------------------------------------------------------------------------
# Judgements and precision


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
    version = model_version or (similarity_settings().model_version if kind == EmbeddingKind.IMAGE
                                else text_model_version_active())
    model = ImageEmbedding if kind == EmbeddingKind.IMAGE else TextEmbedding
    sample = list(
        model.objects.filter(model_version=version)
        .order_by(RawSQL(f"hashint8extended({model._meta.db_table}.product_id, %s)", (seed,)))
        .values_list("product_id", "level2_id", "level3_id")[:queries]
    )
    return [_recall_row(kind=kind, model_version=version, sample=sample, scope=scope, k=k)
            for scope in scopes for k in ks]


def _recall_row(*, kind: str, model_version: str, sample: list[tuple[int, int | None, int | None]], scope: str,
                k: int) -> RecallRow:
    """Measure one scope and k over the sample of (product_id, level2_id, level3_id)."""
    hnsw_recalls, auto_recalls, exact_times, hnsw_times, auto_exact = [], [], [], [], 0
    for product_id, level2_id, level3_id in sample:
        category_id = {Scope.LEVEL2: level2_id, Scope.LEVEL3: level3_id}.get(scope)
        if scope != Scope.GLOBAL and category_id is None:
            continue
        vector = embedding_vector(kind=kind, model_version=model_version, product_id=product_id)
        arguments = dict(kind=kind, model_version=model_version, vector=vector, k=k, scope=scope,
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
    return RecallRow(
        scope=scope, k=k, queries=n,
        recall_hnsw=float(np.mean(hnsw_recalls)) if n else float("nan"),
        recall_auto=float(np.mean(auto_recalls)) if n else float("nan"),
        auto_exact_share=auto_exact / n if n else 0.0, ef_search=ef_search_for(k),
        hnsw_ms_median=float(np.median(hnsw_times) * 1000) if hnsw_times else float("nan"),
        exact_ms_median=float(np.median(exact_times) * 1000) if exact_times else float("nan"),
    )
