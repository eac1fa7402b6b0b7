"""Reads of train runs, model versions and predictions (no TensorFlow: safe in the web process)."""

from __future__ import annotations

from typing import Iterable

from django.db.models import QuerySet

from classifier.models import ModelVersion, Prediction, TrainRun
from labelapp.models import Category


def model_version_active() -> ModelVersion | None:
    """Return the model version that serves predictions, or None before the first promotion."""
    return ModelVersion.objects.filter(is_active=True).select_related("train_run").first()


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.select_related("train_run").order_by("-created_at", "-id")


def train_run_list(*, status: str = "", trigger: str = "") -> QuerySet[TrainRun]:
    """Return train runs, newest first, optionally filtered by status and trigger."""
    runs = TrainRun.objects.select_related("model_version", "requested_by").order_by("-created_at", "-id")
    if status:
        runs = runs.filter(status=status)
    if trigger:
        runs = runs.filter(trigger=trigger)
    return runs


def train_run_get(*, train_run_id: int) -> TrainRun:
    return TrainRun.objects.select_related("model_version", "requested_by").get(id=train_run_id)


def predictions_for_products(*, product_ids: Iterable[int], version: ModelVersion | None = None
                             ) -> dict[int, Prediction]:
    """Return product id → the active (or given) version's prediction, for the products that have one."""
    version = version or model_version_active()
    if version is None:
        return {}
    return {prediction.product_id: prediction
            for prediction in Prediction.objects.filter(model_version=version, product_id__in=list(product_ids))}


def prediction_current(*, product_id: int) -> Prediction | None:
    """Return the active version's prediction for one product."""
    return predictions_for_products(product_ids=[product_id]).get(product_id)


def categories_by_id(*, category_ids: Iterable[int]) -> dict[int, Category]:
    """Return id → Category for the ids (to show predictions' category paths)."""
    return Category.objects.in_bulk(list(set(category_ids)))


def prediction_categories(*, predictions: Iterable[Prediction]) -> dict[int, Category]:
    """Return id → Category of every category the predictions name (top-k and rule-head positives)."""
    ids = {category_id for prediction in predictions for category_id, _ in prediction.top_k}
    ids |= {category_id for prediction in predictions for category_id in prediction.rule_positives}
    return categories_by_id(category_ids=ids)
