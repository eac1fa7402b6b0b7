"""Precomputed neighbour lists (NeighbourCache): top-k image neighbours per product and scope.

A row is used by `product_similar_list` only while its generation equals the space's current one, so any write
of vectors or category copies makes the whole precomputation stale at once, never silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db import transaction

from labelapp.catalogue.models import Product
from similarity.models import EmbeddingKind, ImageEmbedding, NeighbourCache, Scope
from similarity.selectors.search import embedding_generations, embedding_nearest, embedding_vector
from similarity.selectors.settings import similarity_settings
from similarity.selectors.similar import SimilarityError

CHUNK = 500


def neighbour_cache_build(*, scope: str = Scope.LEVEL2, model_version: str | None = None,
                          product_ids: Iterable[int] | None = None, k: int = 100,
                          progress: Callable[[int], None] | None = None) -> int:
    """Store the top-k image neighbours of each embedded product (all, or the given ones); return rows written."""
    version = model_version or similarity_settings().model_version
    generation = embedding_generations(model_versions=[version])[version]
    embedded = ImageEmbedding.objects.filter(model_version=version)
    if product_ids is not None:
        embedded = embedded.filter(product_id__in=list(product_ids))
    written = 0
    last_id = 0
    while True:
        ids = list(embedded.filter(product_id__gt=last_id).order_by("product_id")
                   .values_list("product_id", flat=True)[:CHUNK])
        if not ids:
            return written
        last_id = ids[-1]
        levels = {row[0]: row[1:] for row in Product.objects.filter(id__in=ids).values_list("id", "level2_id",
                                                                                            "level3_id")}
        rows = []
        for product_id in ids:
            level2_id, level3_id = levels.get(product_id, (None, None))
            category_id = {Scope.LEVEL2: level2_id, Scope.LEVEL3: level3_id, Scope.GLOBAL: None}[scope]
            if scope != Scope.GLOBAL and category_id is None:
                continue
            vector = embedding_vector(kind=EmbeddingKind.IMAGE, model_version=version, product_id=product_id)
            if vector is None:
                continue
            try:
                hits, _ = embedding_nearest(kind=EmbeddingKind.IMAGE, model_version=version, vector=vector, k=k,
                                            scope=scope, category_id=category_id, exclude_product_id=product_id)
            except SimilarityError:
                continue
            rows.append(NeighbourCache(product_id=product_id, model_version=version, scope=scope,
                                       generation=generation, neighbour_ids=[hit.product_id for hit in hits],
                                       scores=[hit.score for hit in hits]))
        with transaction.atomic():
            NeighbourCache.objects.bulk_create(
                rows, update_conflicts=True, unique_fields=["model_version", "scope", "product"],
                update_fields=["generation", "neighbour_ids", "scores", "computed_at"],
            )
        written += len(rows)
        if progress:
            progress(written)
