"""Embedding spaces (one per model version) and their generations, which expire cached answers."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import F
from django.utils import timezone

from similarity.models import EmbeddingSpace


def embedding_space_ensure(*, model_version: str, kind: str, dim: int, artefact: str = "") -> EmbeddingSpace:
    """Return the space of a model version, creating it on first write."""
    space, created = EmbeddingSpace.objects.get_or_create(
        model_version=model_version, defaults={"kind": kind, "dim": dim, "artefact": artefact}
    )
    if not created and (space.kind != kind or space.dim != dim):
        raise ValueError(f"model version {model_version!r} is a {space.kind} space of dim {space.dim}, "
                         f"not {kind} of dim {dim}")
    if artefact and space.artefact != artefact:
        EmbeddingSpace.objects.filter(pk=space.pk).update(artefact=artefact)
        space.artefact = artefact
    return space


def embedding_spaces_bump(*, model_versions: Iterable[str]) -> None:
    """Bump the generation of the spaces (in the caller's transaction): cached answers over them expire."""
    versions = sorted(set(model_versions))
    if versions:
        EmbeddingSpace.objects.filter(model_version__in=versions).update(
            generation=F("generation") + 1, updated_at=timezone.now()
        )
