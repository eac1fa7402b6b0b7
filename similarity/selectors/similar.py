"""Similar products: the query behind the shoppers' API and the evaluation pages, its errors and its cache.

`product_similar_list` answers from a NeighbourCache row when one is current, else from `embedding_nearest`
(similarity.selectors.search); hybrid blends the image and text scores of both modalities' candidates, and falls
back to the one modality the product has a vector for (saying so in the result). Answers are cached under a key
holding the generation of each embedding space used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
from django.core.cache import cache
from django.core.files.storage import default_storage

from labelapp.catalogue.models import Product
from similarity.core.text import hybrid_scores
from similarity.models import EmbeddingFailure, EmbeddingKind, Modality, NeighbourCache, Scope
from similarity.selectors.search import (
    Hit,
    SearchTrace,
    ef_search_for,
    embedding_generations,
    embedding_nearest,
    embedding_scores,
    embedding_vector,
)
from similarity.selectors.settings import similarity_settings, text_model_version_active

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
    modality_used: str = ""  # the modality the neighbours were found by: `modality`, or hybrid's fallback
    fallback: str | None = None  # why hybrid answered by one modality alone


@dataclass(frozen=True)
class _Answer:
    hits: list[Hit]
    trace: SearchTrace
    modality_used: str
    parts: dict[int, tuple[float, float]]  # hybrid: product id → (image score, text score)
    fallback: str | None = None


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
# The query


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


def _missing_reason(*, product: Product, kind: str, model_version: str) -> str:
    """Say why the product has no vector of `kind`, as a sentence without its closing full stop."""
    if kind == EmbeddingKind.TEXT:
        if not model_version:
            return "No text model has been built yet (manage.py build_text_vectors)"
        return (f"Product {product.external_id!r} has no text vector (its title has no known word, or it was "
                "imported after the text vectors were built)")
    if not product.image:
        why = f"it has no image ({product.image_error})" if product.image_error else "it has no image"
    else:
        failure = EmbeddingFailure.objects.filter(product=product, model_version=model_version).first()
        why = f"its image could not be embedded: {failure.reason}" if failure else "its image is not embedded yet"
    return f"Product {product.external_id!r} has no image embedding ({why})"


def _vector_or_reason(*, product: Product, kind: str, model_version: str) -> tuple[str | None, str]:
    """Return (the product's vector of `kind`, "") or (None, why it has none)."""
    vector = embedding_vector(kind=kind, model_version=model_version, product_id=product.id) if model_version else None
    if vector is None:
        return None, _missing_reason(product=product, kind=kind, model_version=model_version)
    return vector, ""


def _query_vector(*, product: Product, kind: str, model_version: str) -> str:
    vector, missing = _vector_or_reason(product=product, kind=kind, model_version=model_version)
    if vector is None:
        other = Modality.IMAGE.value if kind == EmbeddingKind.TEXT else Modality.TEXT.value
        raise EmbeddingMissing(f"{missing}; use modality={other}.")
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


def _answer_hybrid(*, product: Product, image_version: str, text_version: str, k: int, scope: str,
                   category_id: int | None, text_weight: float, generations: dict[str, int]) -> _Answer:
    """Blend both modalities; with a vector of one modality only, answer by that one and say why.

    Raise EmbeddingMissing only when the product has neither vector.
    """
    image_vector, no_image = _vector_or_reason(product=product, kind=EmbeddingKind.IMAGE,
                                               model_version=image_version)
    text_vector, no_text = _vector_or_reason(product=product, kind=EmbeddingKind.TEXT, model_version=text_version)
    if image_vector is None and text_vector is None:
        raise EmbeddingMissing(f"{no_image}; {no_text[0].lower()}{no_text[1:]}: no modality can answer.")
    if image_vector is None or text_vector is None:
        kind, version, used = ((EmbeddingKind.TEXT, text_version, Modality.TEXT.value) if image_vector is None
                               else (EmbeddingKind.IMAGE, image_version, Modality.IMAGE.value))
        hits, trace = _hits_single(product=product, kind=kind, model_version=version, k=k, scope=scope,
                                   category_id=category_id, generation=generations.get(version, 0))
        return _Answer(hits=hits, trace=trace, modality_used=used, parts={},
                       fallback=f"{no_image or no_text}: answered by {used} alone.")
    hits, parts = _hits_hybrid(product=product, image_vector=image_vector, text_vector=text_vector,
                               image_version=image_version, text_version=text_version, k=k, scope=scope,
                               category_id=category_id, text_weight=text_weight, generations=generations)
    trace = SearchTrace(strategy="hybrid", candidates=None, ef_search=ef_search_for(min(400, 2 * k)))
    return _Answer(hits=hits, trace=trace, modality_used=Modality.HYBRID.value, parts=parts)


def _hits_hybrid(*, product: Product, image_vector: str, text_vector: str, image_version: str, text_version: str,
                 k: int, scope: str, category_id: int | None, text_weight: float,
                 generations: dict[str, int]) -> tuple[list[Hit], dict[int, tuple[float, float]]]:
    """Blend image and text scores over the union of both modalities' top-2k candidates.

    A candidate without a vector in one modality scores 0 there (cosine of an unrelated direction).
    """
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
    category at the scope's level, EmbeddingMissing when it has no vector of the modality (hybrid: of either).
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

    if modality == Modality.HYBRID:
        answer = _answer_hybrid(product=product, image_version=image_version, text_version=text_version, k=k,
                                scope=scope, category_id=category_id, text_weight=weight, generations=generations)
    else:
        kind = EmbeddingKind.IMAGE if modality == Modality.IMAGE else EmbeddingKind.TEXT
        version = image_version if kind == EmbeddingKind.IMAGE else text_version
        hits, trace = _hits_single(product=product, kind=kind, model_version=version, k=k, scope=scope,
                                   category_id=category_id, generation=generations.get(version, 0))
        answer = _Answer(hits=hits, trace=trace, modality_used=str(modality), parts={})
    briefs = product_briefs(product_ids=[hit.product_id for hit in answer.hits] + [product.id])
    neighbours = []
    for hit in answer.hits:
        if hit.product_id not in briefs:  # deleted since the vectors were read
            continue
        image_score, text_score = answer.parts.get(hit.product_id, (None, None))
        neighbours.append(Neighbour(rank=len(neighbours) + 1, product=briefs[hit.product_id], score=hit.score,
                                    image_score=image_score, text_score=text_score))
    used = answer.modality_used
    result = SimilarResult(
        query=briefs[product.id], neighbours=neighbours, k=k, scope=scope, modality=modality,
        model_version=image_version if used != Modality.TEXT else "",
        text_model_version=text_version if used != Modality.IMAGE else "",
        text_weight=weight if used == Modality.HYBRID else None, trace=answer.trace, modality_used=used,
        fallback=answer.fallback,
    )
    if use_cache:
        cache.set(key, result, timeout=config.cache_timeout_s)
    return result
