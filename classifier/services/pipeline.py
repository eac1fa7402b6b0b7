"""The training pipeline of one run: dataset → train → save → evaluate → predict the catalogue → promote.

Contracts
- `train_run_execute` claims a QUEUED run with a compare-and-set, so a duplicate task delivery does nothing.
- The artefact is written to a temporary directory and renamed into place; a ModelVersion row only ever
  points at a complete artefact.
- Predictions are written under the new (inactive) version; promotion (`classifier.services.promotion`) flips
  `is_active` and hands the products' model categories to the catalogue in one transaction, so the serving
  model is never a half-written one.
- Any failure marks the run FAILED, deletes its partial artefact and its unpromoted version; the active version
  is untouched. A worker that dies leaves a RUNNING run whose heartbeat stops: `train_runs_reap` fails it.

Worker-only: it trains with TensorFlow, so nothing the web process imports may import it (import-linter).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from django.utils import timezone

from classifier.core.architectures import config_for_architecture
from classifier.core.config import FeatureConfig, config_loads
from classifier.core.estimator import ProductClassifier
from classifier.core.names import OBJECTIVES
from classifier.models import ModelVersion, PromotionOutcome, TrainRun, TrainStage, TrainStatus
from classifier.services.dataset import (
    CatalogueTargets,
    LabelledSet,
    catalogue_targets_read,
    dev_test_rows,
    is_validation,
    labelled_set_build,
    product_row_chunks,
    products_frame,
)
from classifier.services.leaks import InputGuard, feed_labelled, feed_leak_guard
from classifier.services.predictions import prediction_rows, predictions_write
from classifier.services.promotion import model_version_promote
from classifier.services.reports import calibration_fit, fmt, headline, reports_compute, rule_thresholds_tune
from classifier.services.runs import TRAINING_PARAMS, TrainingDataError, classifier_settings, model_versions_prune
from labelapp.catalogue.models import Product
from similarity.selectors.settings import similarity_settings

logger = logging.getLogger(__name__)

# Share of the whole run each stage ends at, for the progress bar.
STAGE_END_PERCENT = {TrainStage.DATASET: 10, TrainStage.TRAIN: 60, TrainStage.SAVE: 63, TrainStage.EVALUATE: 70,
                     TrainStage.PREDICT: 95, TrainStage.PROMOTE: 100}


@dataclass
class _Progress:
    run_id: int
    every_s: float = 2.0
    _last: float = float("-inf")

    def __call__(self, stage: str, percent: float, message: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        TrainRun.objects.filter(id=self.run_id, status=TrainStatus.RUNNING).update(
            stage=stage, progress_percent=int(max(0, min(100, percent))), progress_message=message[:500],
            heartbeat_at=timezone.now())


@dataclass
class _Attempt:
    """One execution of a claimed run: what it has made so far, so that a failure undoes exactly that."""

    run: TrainRun
    report: Callable[[str, float, str], None] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    artefact: Path | None = None
    version: ModelVersion | None = None
    calibration: dict = field(default_factory=dict)
    progress: _Progress = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.progress = _Progress(self.run.id)

    def step(self, stage: str, percent: float, message: str = "", *, force: bool = False) -> None:
        """Record progress on the run and mirror it to `report`."""
        self.progress(stage, percent, message, force=force)
        if self.report is not None:
            self.report(stage, percent, message)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time the block into `timings[stage]`; a stage that raises records no time."""
        started = time.perf_counter()
        yield
        self.timings[stage] = time.perf_counter() - started


def train_run_execute(*, train_run_id: int, report: Callable[[str, float, str], None] | None = None) -> TrainRun:
    """Run the whole pipeline for a queued run; return it finished (SUCCEEDED or FAILED).

    A run that is not QUEUED (already taken by another delivery, or finished) is returned untouched.
    `report(stage, percent, message)` mirrors progress (the `train` command prints it).
    """
    claimed = _train_run_claim(train_run_id=train_run_id)
    run = TrainRun.objects.get(id=train_run_id)
    if not claimed:
        logger.info("train run %s is %s: nothing to do", train_run_id, run.status)
        return run
    attempt = _Attempt(run=run, report=report)
    try:
        data = _stage_dataset(attempt)
        classifier = _stage_train(attempt, data)
        _stage_save(attempt, classifier)
        thresholds, metrics = _stage_evaluate(attempt, data, classifier)
        _stage_predict(attempt, data, classifier, thresholds, metrics)
        _train_run_succeed(attempt, outcome=_stage_promote(attempt))
        model_versions_prune(keep=classifier_settings()["keep_versions"])
    except Exception as error:  # noqa: BLE001 — any failure must leave the run FAILED and the data consistent
        logger.exception("train run %s failed", run.id)
        _train_run_fail(attempt, error)
    run.refresh_from_db()
    return run


def _train_run_claim(*, train_run_id: int) -> bool:
    """Move the run from QUEUED to RUNNING; return False when it was not QUEUED."""
    # Compare-and-set: of two deliveries of the same task only one update finds the row still QUEUED.
    return bool(TrainRun.objects.filter(id=train_run_id, status=TrainStatus.QUEUED).update(
        status=TrainStatus.RUNNING, stage=TrainStage.DATASET, started_at=timezone.now(), heartbeat_at=timezone.now(),
        worker=f"{socket.gethostname()}:{os.getpid()}"))


def _stage_dataset(attempt: _Attempt) -> _Data:
    """Build the fit, validation and test sets and record their counts on the run."""
    with attempt.timed("dataset"):
        attempt.step(TrainStage.DATASET, 1, "reading labels, rules and products", force=True)
        data = _dataset_build(attempt.run)
    TrainRun.objects.filter(id=attempt.run.id).update(data_counts=data.counts)
    if data.guard.warnings:
        # Shown with the run's settings on its page and by `train`; the artefact keeps the config it trained with.
        attempt.run.params = {**attempt.run.params, "warnings": list(data.guard.warnings),
                              "dropped_inputs": list(data.guard.dropped)}
        TrainRun.objects.filter(id=attempt.run.id).update(params=attempt.run.params)
        for warning in data.guard.warnings:
            logger.warning("train run %s: %s", attempt.run.id, warning)
    return data


def _stage_train(attempt: _Attempt, data: _Data) -> ProductClassifier:
    """Fit the run's classifier, reporting each epoch, then calibrate its exclusive head on the validation slice."""
    with attempt.timed("train"):
        attempt.step(TrainStage.TRAIN, STAGE_END_PERCENT[TrainStage.DATASET],
                     f"training on {len(data.fit):,} products", force=True)
        classifier = _train(attempt.run, data, attempt.step)
        attempt.calibration = calibration_fit(classifier, validation=data.validation, test=data.test)
        return classifier


def _stage_save(attempt: _Attempt, classifier: ProductClassifier) -> None:
    """Write the artefact and remember it, so that a later failure removes it."""
    with attempt.timed("save"):
        attempt.step(TrainStage.SAVE, STAGE_END_PERCENT[TrainStage.TRAIN], "saving the model", force=True)
        attempt.artefact = _artefact_save(attempt.run, classifier)


def _stage_evaluate(attempt: _Attempt, data: _Data, classifier: ProductClassifier) -> tuple[np.ndarray, dict]:
    """Tune the rule thresholds, compute the test reports, store them on the run; return (thresholds, metrics)."""
    with attempt.timed("evaluate"):
        attempt.step(TrainStage.EVALUATE, STAGE_END_PERCENT[TrainStage.SAVE], "evaluating on the test split",
                     force=True)
        thresholds = rule_thresholds_tune(classifier, validation=data.validation)
        metrics = reports_compute(classifier, test=data.test, thresholds=thresholds)
        if attempt.calibration:
            metrics["calibration"] = attempt.calibration
    TrainRun.objects.filter(id=attempt.run.id).update(metrics=metrics, history=classifier.history_ or {})
    return thresholds, metrics


def _stage_predict(attempt: _Attempt, data: _Data, classifier: ProductClassifier, thresholds: np.ndarray,
                   metrics: dict) -> None:
    """Create the (inactive) model version and write its predictions for the whole catalogue."""
    run = attempt.run
    with attempt.timed("predict"):
        headline_metric, headline_value = headline(metrics)
        attempt.version = ModelVersion.objects.create(
            name=f"clf-{run.id}-{run.architecture}", train_run=run, architecture=run.architecture,
            objectives=run.objectives, artefact_path=str(attempt.artefact), classes=data.targets.classes,
            rule_classes=data.targets.rule_classes, rule_thresholds=[float(t) for t in thresholds],
            image_model_version=data.image_model_version, headline_metric=headline_metric,
            headline_value=headline_value, temperature=attempt.calibration.get("temperature", 1.0),
            calibration={key: value for key, value in attempt.calibration.items() if key != "test"},
            precision_measured=attempt.calibration.get("measured", False))
        count = _predict_catalogue(version=attempt.version, classifier=classifier, thresholds=thresholds,
                                   image_model_version=data.image_model_version, step=attempt.step)
        ModelVersion.objects.filter(id=attempt.version.id).update(predictions_count=count)


def _stage_promote(attempt: _Attempt) -> str:
    """Promote the new version when the run asks for it; return the promotion outcome."""
    with attempt.timed("promote"):
        attempt.step(TrainStage.PROMOTE, STAGE_END_PERCENT[TrainStage.PREDICT], "promoting", force=True)
        if not attempt.run.promote:
            return PromotionOutcome.NOT_REQUESTED
        return model_version_promote(version=attempt.version, max_regression=attempt.run.max_regression)


def _train_run_succeed(attempt: _Attempt, *, outcome: str) -> None:
    """Mark the run SUCCEEDED with its outcome, timings and artefact."""
    version = attempt.version
    TrainRun.objects.filter(id=attempt.run.id).update(
        status=TrainStatus.SUCCEEDED, stage=TrainStage.DONE, progress_percent=100, outcome=outcome,
        progress_message=f"{version.headline_metric} = {fmt(version.headline_value)}; "
                         f"{PromotionOutcome(outcome).label}",
        timings=attempt.timings, artefact_path=str(attempt.artefact), finished_at=timezone.now(),
        heartbeat_at=timezone.now())


def _train_run_fail(attempt: _Attempt, error: Exception) -> None:
    """Mark the run FAILED with the error, deleting its unpromoted version and its partial artefact."""
    if attempt.version is not None:
        # A version promoted before the failure (pruning failed after it) serves predictions: it stays.
        ModelVersion.objects.filter(id=attempt.version.id, is_active=False).delete()
    artefact = attempt.artefact
    if artefact is not None and not ModelVersion.objects.filter(artefact_path=str(artefact)).exists():
        shutil.rmtree(artefact, ignore_errors=True)
    message = f"{type(error).__name__}: {error}"
    TrainRun.objects.filter(id=attempt.run.id).update(
        status=TrainStatus.FAILED, error=message + "\n\n" + traceback.format_exc(limit=8), timings=attempt.timings,
        progress_message=message[:500], finished_at=timezone.now(), heartbeat_at=timezone.now())


@dataclass
class _Data:
    fit: LabelledSet
    validation: LabelledSet
    test: LabelledSet
    targets: CatalogueTargets
    image_model_version: str
    image: bool
    counts: dict
    guard: InputGuard

    @property
    def config(self) -> FeatureConfig:
        """The feature config the model trains with: the run's, for its architecture, less any leaking input."""
        return self.guard.config

    @property
    def classes(self):
        return self.targets.classes


def _dataset_build(run: TrainRun) -> _Data:
    objectives = list(run.objectives)
    weak = "exclusive" in objectives and bool(run.params.get("weak_targets", True))
    targets = catalogue_targets_read(weak=weak)
    if "exclusive" in objectives and not targets.classes:
        raise TrainingDataError("the exclusive objective needs human labels or weak targets (rules or feed categories "
                                "that name exclusive categories), and there are none yet: label some products "
                                "first, or train with objectives=rule")
    if "rule" in objectives and not targets.rule_classes:
        raise TrainingDataError("the rule objective needs rule labels, and there are none: import and apply "
                                "legacy rules first")
    config = config_for_architecture(config_loads(run.feature_config), run.architecture)
    image = any(spec.kind == "dense" for spec in config.fields)
    image_model_version = similarity_settings().model_version if image else ""
    dev, test = dev_test_rows()
    dev_set = labelled_set_build(rows=dev, targets=targets, objectives=objectives,
                                 image_model_version=image_model_version, image=image, weak=weak)
    if not len(dev_set):
        raise TrainingDataError("no dev-split product has a target for the requested objectives")
    rows_by_id = {row["id"]: row for row in dev}
    in_validation = np.array([is_validation(source=rows_by_id[pid]["source"], external_id=rows_by_id[pid]["external_id"])
                              for pid in dev_set.product_ids], dtype=bool)
    # A tiny labelled set cannot spare a validation slice: train on all of it and stop on the epoch count.
    if in_validation.sum() < 5 or (~in_validation).sum() < 5:
        in_validation[:] = False
    fit, validation = dev_set.take(~in_validation), dev_set.take(in_validation)
    test_set = labelled_set_build(rows=test, targets=targets, objectives=OBJECTIVES,
                                  image_model_version=image_model_version, image=image)
    # The exclusive head's labels, wherever they are (training, validation, test), decide what it may read.
    feed_labels = len(feed_labelled(targets=targets).intersection(np.concatenate(
        [fit.product_ids, validation.product_ids, test_set.product_ids]).tolist())) if "exclusive" in objectives else 0
    guard = feed_leak_guard(config=config, feed_labels=feed_labels,
                            strict=bool(run.params.get("strict_inputs", False)))
    counts = _data_counts(objectives=objectives, targets=targets, fit=fit, validation=validation, test=test_set,
                          image=image) | {"feed_labels": feed_labels}
    if "exclusive" not in objectives:
        targets.classes = []
    if "rule" not in objectives:
        targets.rule_classes = []
    return _Data(fit=fit, validation=validation, test=test_set, targets=targets,
                 image_model_version=image_model_version, image=image, counts=counts, guard=guard)


def _data_counts(*, objectives: list[str], targets: CatalogueTargets, fit: LabelledSet, validation: LabelledSet,
                 test: LabelledSet, image: bool) -> dict:
    """Return what the run trains and tests on: rows, labels by strategy, weak targets by source, classes."""
    labels_by_strategy: dict[str, int] = {}
    weak_by_source: dict[str, int] = {}
    for pid in fit.product_ids.tolist() + validation.product_ids.tolist():
        if pid in targets.exclusive:
            strategy = targets.exclusive_strategy[pid]
            labels_by_strategy[strategy] = labels_by_strategy.get(strategy, 0) + 1
        elif pid in targets.weak:
            source = targets.weak[pid][2]
            weak_by_source[source] = weak_by_source.get(source, 0) + 1
    exclusive = "exclusive" in objectives
    return {
        "train": len(fit), "validation": len(validation),
        "exclusive_labels": int(sum(labels_by_strategy.values())) if exclusive else 0,
        "labels_by_strategy": labels_by_strategy if exclusive else {},
        "weak_targets": weak_by_source if exclusive else {},
        "rule_known": int(fit.targets.rule_known.sum() + validation.targets.rule_known.sum()) if "rule" in objectives
        else 0,
        "test_rule": int(test.targets.rule_known.sum()),
        "test_ground_truth": int((test.targets.exclusive >= 0).sum()),
        "classes": len(targets.classes) if exclusive else 0,
        "rule_classes": len(targets.rule_classes) if "rule" in objectives else 0,
        "with_photo": int(fit.frame.image_present.sum()) if image else 0,
    }


def _train(run: TrainRun, data: _Data, step):
    defaults = classifier_settings()
    params = {name: run.params.get(name, defaults.get(name)) for name in TRAINING_PARAMS}
    params["random_state"] = params["random_state"] if params["random_state"] is not None else run.id
    if "batch_size" not in run.params:
        # Small labelled sets (the first rounds) would get one or two steps per epoch at the default batch size:
        # keep at least ~10 steps per epoch.
        params["batch_size"] = min(params["batch_size"], max(16, math.ceil(len(data.fit) / 10)))
    TrainRun.objects.filter(id=run.id).update(data_counts={**data.counts, "batch_size": params["batch_size"],
                                                           "epochs": params["epochs"]})
    classifier = ProductClassifier(config=data.config, architecture=run.architecture, objectives=tuple(run.objectives),
                                   epochs=params["epochs"], batch_size=params["batch_size"],
                                   learning_rate=params["learning_rate"], loss_weights=params["loss_weights"],
                                   patience=params["patience"], random_state=params["random_state"],
                                   validation_fraction=0.0)
    y_fit = _objective_targets(data.fit, run.objectives)
    validation = None
    if len(data.validation):
        validation = (data.validation.frame, _objective_targets(data.validation, run.objectives))
    start, end, epochs = STAGE_END_PERCENT[TrainStage.DATASET], STAGE_END_PERCENT[TrainStage.TRAIN], params["epochs"]

    def on_epoch(epoch: int, logs: dict) -> None:
        loss = logs.get("val_loss", logs.get("loss"))
        step(TrainStage.TRAIN, start + (end - start) * (epoch + 1) / epochs,
             f"epoch {epoch + 1}/{epochs}: {'val_' if 'val_loss' in logs else ''}loss {fmt(loss)}", force=True)

    return classifier.fit(data.fit.frame, y_fit, validation_data=validation, progress=on_epoch)


def _objective_targets(dataset: LabelledSet, objectives: Sequence[str]):
    """Return the set's targets restricted to the run's heads (classes of other heads dropped)."""
    targets = dataset.targets
    if "exclusive" not in objectives:
        targets = replace(targets, exclusive=None, classes=())
    if "rule" not in objectives:
        targets = replace(targets, rule=None, rule_known=None, rule_classes=())
    return targets


def _artefact_save(run: TrainRun, classifier) -> Path:
    root = classifier_settings()["root"]
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"run-{run.id}-{run.architecture}"
    temporary = root / f".tmp-run-{run.id}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    classifier.save(temporary)
    if final.exists():  # a previous attempt of this run that failed after saving
        shutil.rmtree(final)
    os.replace(temporary, final)
    return final



def _predict_catalogue(*, version: ModelVersion, classifier, thresholds: np.ndarray, image_model_version: str,
                       step) -> int:
    """Predict every product in chunks and write the rows under `version`; return how many were written."""
    chunk_size = classifier_settings()["predict_chunk"]
    total = Product.objects.count()
    done = 0
    start, end = STAGE_END_PERCENT[TrainStage.EVALUATE], STAGE_END_PERCENT[TrainStage.PREDICT]
    classes = [int(c) for c in classifier.classes_]
    rule_classes = [int(c) for c in classifier.rule_classes_]
    image = bool(image_model_version)
    for chunk in product_row_chunks(chunk_size=chunk_size):
        frame = products_frame(rows=chunk, image_model_version=image_model_version, image=image)
        proba = classifier.predict_proba(frame)
        rows = prediction_rows(product_ids=np.array([row["id"] for row in chunk]), proba=proba, classes=classes,
                               rule_classes=rule_classes, thresholds=thresholds)
        predictions_write(version=version, rows=rows)
        done += len(chunk)
        step(TrainStage.PREDICT, start + (end - start) * done / max(total, 1), f"predicted {done:,} / {total:,}")
    return done

