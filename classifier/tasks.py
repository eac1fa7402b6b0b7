"""Celery entry points of the classifier; they run on the ml queue (settings.CELERY_TASK_ROUTES)."""

from celery import shared_task
from django.db import OperationalError

from classifier.services.runs import classifier_settings, model_versions_prune, train_runs_reap


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def train_run_execute_task(train_run_id: int) -> int:
    """Run the training pipeline of a queued run (a duplicate delivery finds it taken and returns)."""
    from classifier.services.pipeline import train_run_execute  # lazy: TensorFlow, ml worker only

    return train_run_execute(train_run_id=train_run_id).id


@shared_task
def train_runs_reap_task() -> int:
    """Fail runs whose worker died."""
    return train_runs_reap()


@shared_task
def model_versions_prune_task() -> dict:
    """Delete old versions' artefacts and predictions."""
    return model_versions_prune(keep=classifier_settings()["keep_versions"])
