"""Embedding jobs and how much of the catalogue the active models cover, for the jobs page."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from labelapp.catalogue.models import Product
from similarity.models import EmbeddingFailure, EmbeddingJob, ImageEmbedding, TextEmbedding
from similarity.selectors.settings import similarity_settings, text_model_version_active


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
