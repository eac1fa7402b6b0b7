"""Train runs from the web process and the shell: settings, queueing a run, and housekeeping (reaper, pruning).

Importing this module loads no TensorFlow: the pipeline that executes a run is `classifier.services.pipeline`,
which only the ml worker and the `train` command import.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Sequence

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from classifier.core.config import config_loads
from classifier.core.names import ARCHITECTURE_NAMES, OBJECTIVES
from classifier.models import ModelVersion, Prediction, TrainRun, TrainStatus
from labelapp.common.dispatch import task_send

TRAINING_PARAMS = {"epochs": int, "batch_size": int, "learning_rate": float, "patience": int,
                   "loss_weights": dict, "random_state": int, "weak_targets": bool, "strict_inputs": bool}
"""`weak_targets` (default true): the exclusive head also learns from the legacy rules' and the feed's categories.
`strict_inputs` (default false): refuse, rather than drop, inputs that read the field the labels were taken from
(classifier.services.leaks)."""


class TrainingDataError(ValueError):
    """The catalogue has no data for the requested objectives (e.g. the exclusive objective with no labels)."""


def classifier_settings() -> dict:
    """Return the classifier settings (config/settings.py, from the environment) under short names."""
    return {
        "architecture": settings.CLASSIFIER_DEFAULT_ARCHITECTURE,
        "feature_config": Path(settings.CLASSIFIER_FEATURE_CONFIG),
        "epochs": settings.CLASSIFIER_EPOCHS,
        "batch_size": settings.CLASSIFIER_BATCH_SIZE,
        "learning_rate": settings.CLASSIFIER_LEARNING_RATE,
        "patience": settings.CLASSIFIER_PATIENCE,
        "predict_chunk": settings.CLASSIFIER_PREDICT_CHUNK,
        "keep_versions": settings.CLASSIFIER_KEEP_VERSIONS,
        "stale_after": timedelta(seconds=settings.CLASSIFIER_STALE_AFTER_S),
        "root": Path(settings.ARTEFACT_ROOT) / "classifier",
    }


def train_run_create(*, architecture: str | None = None, objectives: Sequence[str] = ("exclusive",),
                     params: dict | None = None, promote: bool = True, max_regression: float | None = None,
                     user: AbstractBaseUser | None = None, trigger: str = "manual", feature_config: str | None = None,
                     schedule: bool = True) -> TrainRun:
    """Queue a training run; with `schedule`, its task is sent when the caller's transaction commits.

    `params` may hold epochs, batch_size, learning_rate, patience, loss_weights, random_state and free-form
    context (round, setting). `feature_config` is TOML text; default: the CLASSIFIER_FEATURE_CONFIG file.
    """
    defaults = classifier_settings()
    architecture = architecture or defaults["architecture"]
    errors = {}
    if architecture not in ARCHITECTURE_NAMES:
        errors["architecture"] = f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURE_NAMES)}"
    objectives = list(dict.fromkeys(objectives))
    if not objectives or set(objectives) - set(OBJECTIVES):
        errors["objectives"] = f"objectives must be a non-empty subset of {list(OBJECTIVES)}, got {objectives}"
    params = dict(params or {})
    for name, kind in TRAINING_PARAMS.items():
        if name in params and params[name] is not None and not isinstance(params[name], (kind, int) if kind is float
                                                                           else kind):
            errors[name] = f"{name} must be a {kind.__name__}"
    if max_regression is not None and not 0 <= max_regression <= 1:
        errors["max_regression"] = "max_regression must be between 0 and 1"
    text = feature_config if feature_config is not None else defaults["feature_config"].read_text(encoding="utf-8")
    try:
        config_loads(text)
    except (ValueError, KeyError, TypeError) as error:
        errors["feature_config"] = f"invalid feature config: {error}"
    if errors:
        raise ValidationError(errors)
    run = TrainRun(architecture=architecture, objectives=objectives, params=params, feature_config=text,
                   promote=promote, max_regression=max_regression, requested_by=user, trigger=trigger)
    run.full_clean()
    run.save()
    if schedule:
        task_send("classifier.tasks.train_run_execute_task", train_run_id=run.id)
    return run



def train_runs_reap(*, stale_after: timedelta | None = None) -> int:
    """Fail RUNNING runs whose heartbeat stopped (their worker died); return how many."""
    stale_after = stale_after or classifier_settings()["stale_after"]
    cutoff = timezone.now() - stale_after
    stale = list(TrainRun.objects.filter(status=TrainStatus.RUNNING, heartbeat_at__lt=cutoff).values_list("id", flat=True))
    reaped = 0
    for run_id in stale:
        with transaction.atomic():
            reaped += TrainRun.objects.filter(id=run_id, status=TrainStatus.RUNNING, heartbeat_at__lt=cutoff).update(
                status=TrainStatus.FAILED, finished_at=timezone.now(),
                error=f"the worker stopped reporting for more than {stale_after}; it probably died")
            ModelVersion.objects.filter(train_run_id=run_id, is_active=False).delete()
    return reaped


def model_versions_prune(*, keep: int) -> dict[str, int]:
    """Delete the artefacts and predictions of inactive versions beyond the newest `keep`; remove stray files.

    The ModelVersion rows stay (labels and rounds point at them) with an empty artefact path.
    """
    root = classifier_settings()["root"]
    recent = list(ModelVersion.objects.order_by("-created_at", "-id").values_list("id", flat=True)[:keep])
    old = ModelVersion.objects.filter(is_active=False).exclude(id__in=recent).exclude(artefact_path="")
    pruned = {"versions": 0, "predictions": 0, "files": 0}
    for version in old:
        pruned["predictions"] += Prediction.objects.filter(model_version=version).delete()[0]
        shutil.rmtree(version.artefact_path, ignore_errors=True)
        ModelVersion.objects.filter(id=version.id).update(artefact_path="", predictions_count=0)
        pruned["versions"] += 1
    if root.exists():
        referenced = {Path(path).name for path in ModelVersion.objects.exclude(artefact_path="").values_list(
            "artefact_path", flat=True)}
        running = set(TrainRun.objects.filter(status__in=[TrainStatus.RUNNING, TrainStatus.QUEUED]).values_list(
            "id", flat=True))
        for entry in root.iterdir():
            run_id = _run_id_of(entry.name)
            if entry.name not in referenced and run_id not in running:
                shutil.rmtree(entry, ignore_errors=True)
                pruned["files"] += 1
    return pruned


def _run_id_of(name: str) -> int | None:
    parts = name.lstrip(".").split("-")
    for index, part in enumerate(parts[:-1]):
        if part == "run" and parts[index + 1].isdigit():
            return int(parts[index + 1])
    return None
