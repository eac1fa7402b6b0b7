"""Reads of model versions: the active one, one by id, and lists for the API and the version picker."""

from __future__ import annotations

from django.db.models import QuerySet

from classifier.models import ModelVersion


def model_version_active() -> ModelVersion | None:
    """Return the model version that serves predictions, or None before the first promotion."""
    return ModelVersion.objects.filter(is_active=True).select_related("train_run").first()


def model_version_get(*, version_id: int) -> ModelVersion | None:
    """Return one model version, or None."""
    return ModelVersion.objects.filter(pk=version_id).select_related("train_run").first()


def model_version_list() -> QuerySet[ModelVersion]:
    """Return every model version with its train run, newest first (a queryset, for pagination)."""
    return ModelVersion.objects.select_related("train_run").order_by("-created_at", "-id")


def model_version_choices() -> list[ModelVersion]:
    """Return every model version, newest first, without their class lists (for a version picker)."""
    return list(ModelVersion.objects.defer("classes", "rule_classes", "rule_thresholds").order_by("-created_at", "-id"))
