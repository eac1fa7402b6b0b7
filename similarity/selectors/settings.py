"""The similarity settings (config/settings.py reads each from the environment) and the text model in use."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from similarity.core.backbones import BACKBONES
from similarity.models import EmbeddingJob, EmbeddingKind, JobStatus


@dataclass(frozen=True)
class SimilaritySettings:
    """The similarity settings, typed (config/settings.py declares each SIMILARITY_* one)."""

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
    text_fit_max_products: int
    jpeg_max_pixels: int


def similarity_settings() -> SimilaritySettings:
    """Return the similarity settings; an empty SIMILARITY_MODEL_VERSION means the backbone's own version."""
    backbone = settings.SIMILARITY_BACKBONE
    # An unknown backbone gives no version; the system check reports it (similarity.E001).
    default_version = BACKBONES[backbone].model_version if backbone in BACKBONES else ""
    return SimilaritySettings(
        model_version=settings.SIMILARITY_MODEL_VERSION or default_version,
        backbone=backbone,
        text_model_version=settings.SIMILARITY_TEXT_MODEL_VERSION,
        embed_batch_size=settings.SIMILARITY_EMBED_BATCH_SIZE,
        embed_workers=settings.SIMILARITY_EMBED_WORKERS,
        job_chunk_size=settings.SIMILARITY_JOB_CHUNK_SIZE,
        hybrid_text_weight=settings.SIMILARITY_HYBRID_TEXT_WEIGHT,
        exact_scan_min_rows=settings.SIMILARITY_EXACT_SCAN_MIN_ROWS,
        exact_scan_max_rows=settings.SIMILARITY_EXACT_SCAN_MAX_ROWS,
        exact_scan_cost_ratio=settings.SIMILARITY_EXACT_SCAN_COST_RATIO,
        max_scan_tuples=settings.SIMILARITY_MAX_SCAN_TUPLES,
        cache_timeout_s=settings.SIMILARITY_CACHE_TIMEOUT_S,
        text_dim=settings.SIMILARITY_TEXT_DIM,
        text_fit_max_products=settings.SIMILARITY_TEXT_FIT_MAX_PRODUCTS,
        jpeg_max_pixels=settings.IMAGE_JPEG_MAX_PIXELS,
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
