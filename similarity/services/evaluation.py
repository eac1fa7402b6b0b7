"""Evaluating neighbours: reviewers' judgements, and an automatic precision against categories.

Automatic precision@k: for sampled query products, the share of their k neighbours whose effective level-3
category equals the query's. The queries are the products with a human label when any labelled product has a
vector ("labelled"), else every product with a level-3 category ("categorised"); a neighbour's category is its
effective one (label > prediction > rule > feed). With scope=level3 every neighbour shares the query's level-3
category by construction, so the figure is only meaningful for scope=global and scope=level2.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models.expressions import RawSQL

from labelapp.catalogue.models import Label, Product
from similarity.models import EmbeddingKind, Modality, Scope, SimilarityJudgement
from similarity.selectors.evaluation import category_names, precision_population
from similarity.selectors.search import embedding_generations
from similarity.selectors.settings import similarity_settings, text_model_version_active
from similarity.selectors.similar import SimilarityError, product_similar_list

AUTO_PRECISION_CACHE_S = 3600


def judgement_record(*, query: Product, neighbour: Product, scope: str, modality: str, model_version: str,
                     rank: int, is_similar: bool, reviewer) -> SimilarityJudgement:
    """Record (or change) a reviewer's verdict on a neighbour; repeating it is harmless (one row per setting)."""
    if query.pk == neighbour.pk:
        raise ValueError("a product cannot be judged as its own neighbour")
    judgement = SimilarityJudgement(query=query, neighbour=neighbour, scope=scope, modality=modality,
                                    model_version=model_version, rank=rank, is_similar=is_similar,
                                    reviewer=reviewer)
    judgement.full_clean(validate_constraints=False)
    SimilarityJudgement.objects.bulk_create(
        [judgement], update_conflicts=True,
        unique_fields=["query", "neighbour", "scope", "modality", "model_version", "reviewer"],
        update_fields=["is_similar", "rank", "updated_at"],
    )
    return SimilarityJudgement.objects.get(query=query, neighbour=neighbour, scope=scope, modality=modality,
                                           model_version=model_version, reviewer=reviewer)


@dataclass(frozen=True)
class CategoryAutoPrecision:
    category_id: int
    full_path: str
    queries: int
    precision: float

    @property
    def count(self) -> int:
        return self.queries


@dataclass(frozen=True)
class AutoPrecision:
    population: str  # "labelled" or "categorised" (see the module docstring)
    population_size: int
    queries: int
    k: int
    scope: str
    modality: str
    model_version: str
    precision: float | None  # None when no query could be answered
    per_category: list[CategoryAutoPrecision]


def precision_same_category_compute(*, modality: str = Modality.IMAGE, scope: str = Scope.GLOBAL, k: int = 10,
                                    sample_size: int = 200, random_state: int = 0,
                                    model_version: str | None = None) -> AutoPrecision:
    """Return precision@k of same-level-3 neighbours over a seeded sample of query products (cached).

    A query's precision is relevant neighbours / neighbours returned (fewer than k only in a tiny scope).
    """
    version = model_version or similarity_settings().model_version
    text_version = text_model_version_active() if modality != Modality.IMAGE else ""
    kind = EmbeddingKind.TEXT if modality == Modality.TEXT else EmbeddingKind.IMAGE
    space = text_version if kind == EmbeddingKind.TEXT else version
    generations = embedding_generations(model_versions=[v for v in (version, text_version) if v])
    labels_seen = Label.objects.order_by("-id").values_list("id", flat=True).first() or 0
    raw_key = f"{modality}|{scope}|{k}|{sample_size}|{random_state}|{sorted(generations.items())}|{labels_seen}"
    key = "similarity:auto-precision:v1:" + hashlib.sha1(raw_key.encode()).hexdigest()
    found = cache.get(key)
    if found is not None:
        return found

    population, products = precision_population(kind=kind, model_version=space)
    size = products.count()
    sample = list(products.select_related("category")
                  .order_by(RawSQL("hashint8extended(labelapp_product.id, %s)", (random_state,)))[:sample_size])
    per_query: list[tuple[int, float]] = []
    for query in sample:
        try:
            result = product_similar_list(product=query, k=k, scope=scope, modality=modality, model_version=version)
        except SimilarityError:
            continue
        if not result.neighbours or result.fallback:  # a hybrid answered by one modality is not hybrid's precision
            continue
        relevant = sum(1 for neighbour in result.neighbours if neighbour.product.level3_id == query.level3_id)
        per_query.append((query.level3_id, relevant / len(result.neighbours)))
    by_category: dict[int, list[float]] = defaultdict(list)
    for category_id, value in per_query:
        by_category[category_id].append(value)
    names = category_names(category_ids=list(by_category))
    report = AutoPrecision(
        population=population, population_size=size, queries=len(per_query), k=k, scope=scope, modality=modality,
        model_version=space,
        precision=sum(value for _, value in per_query) / len(per_query) if per_query else None,
        per_category=sorted(
            (CategoryAutoPrecision(category_id=cid, full_path=names.get(cid, str(cid)), queries=len(values),
                                   precision=sum(values) / len(values)) for cid, values in by_category.items()),
            key=lambda row: (-row.queries, row.full_path),
        ),
    )
    cache.set(key, report, timeout=AUTO_PRECISION_CACHE_S)
    return report
