"""The training pipeline: start → dataset → train → save → evaluate → predict the catalogue → promote.

Contracts
- `train_run_execute` claims a QUEUED run with a compare-and-set, so a duplicate task delivery does nothing.
- The artefact is written to a temporary directory and renamed into place; a ModelVersion row only ever
  points at a complete artefact.
- Predictions are written under the new (inactive) version; promotion flips `is_active` and moves the products'
  effective categories in one transaction, so the serving model is never a half-written one.
- Any failure marks the run FAILED, deletes its partial artefact and its unpromoted version; the active version
  is untouched. A worker that dies leaves a RUNNING run whose heartbeat stops: `train_runs_reap` fails it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from classifier.models import ModelVersion, Prediction, PromotionOutcome, TrainRun, TrainStage, TrainStatus
from classifier.services.dataset import (CatalogueTargets, LabelledSet, catalogue_targets_read, class_ancestors,
                                         dev_test_rows, is_validation, labelled_set_build, product_row_chunks,
                                         products_frame)
from labelapp.models import CategorySource, Product

logger = logging.getLogger(__name__)

OBJECTIVES = ("exclusive", "rule")
TOP_K = 5
# Share of the whole run each stage ends at, for the progress bar.
STAGE_END_PERCENT = {TrainStage.DATASET: 10, TrainStage.TRAIN: 60, TrainStage.SAVE: 63, TrainStage.EVALUATE: 70,
                     TrainStage.PREDICT: 95, TrainStage.PROMOTE: 100}
TRAINING_PARAMS = {"epochs": int, "batch_size": int, "learning_rate": float, "patience": int,
                   "loss_weights": dict, "random_state": int}


class TrainingDataError(ValueError):
    """The catalogue has no data for the requested objectives (e.g. the exclusive objective with no labels)."""


def classifier_settings() -> dict:
    """Return the classifier settings with their defaults."""
    return {
        "architecture": getattr(settings, "CLASSIFIER_DEFAULT_ARCHITECTURE", "wide_deep"),
        "feature_config": Path(getattr(settings, "CLASSIFIER_FEATURE_CONFIG",
                                       Path(settings.BASE_DIR) / "classifier/core/configs/default.toml")),
        "epochs": int(getattr(settings, "CLASSIFIER_EPOCHS", 15)),
        "batch_size": int(getattr(settings, "CLASSIFIER_BATCH_SIZE", 256)),
        "learning_rate": float(getattr(settings, "CLASSIFIER_LEARNING_RATE", 3e-3)),
        "patience": int(getattr(settings, "CLASSIFIER_PATIENCE", 2)),
        "predict_chunk": int(getattr(settings, "CLASSIFIER_PREDICT_CHUNK", 5000)),
        "keep_versions": int(getattr(settings, "CLASSIFIER_KEEP_VERSIONS", 3)),
        "stale_after": timedelta(seconds=int(getattr(settings, "CLASSIFIER_STALE_AFTER_S", 900))),
        "root": Path(settings.ARTEFACT_ROOT) / "classifier",
    }


# --- start ----------------------------------------------------------------------------------------------------


def train_run_create(*, architecture: str | None = None, objectives: Sequence[str] = ("exclusive",),
                     params: dict | None = None, promote: bool = True, max_regression: float | None = None,
                     user: AbstractBaseUser | None = None, trigger: str = "manual", feature_config: str | None = None,
                     schedule: bool = True) -> TrainRun:
    """Queue a training run; with `schedule`, its task is sent when the caller's transaction commits.

    `params` may hold epochs, batch_size, learning_rate, patience, loss_weights, random_state and free-form
    context (round, setting). `feature_config` is TOML text; default: the CLASSIFIER_FEATURE_CONFIG file.
    """
    from classifier.core.config import config_loads
    from classifier.core_names import ARCHITECTURE_NAMES

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
        from classifier.tasks import train_run_execute_task

        transaction.on_commit(lambda: train_run_execute_task.delay(run.id))
    return run


# --- execute --------------------------------------------------------------------------------------------------


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


def train_run_execute(*, train_run_id: int, report: Callable[[str, float, str], None] | None = None) -> TrainRun:
    """Run the whole pipeline for a queued run; return it finished (SUCCEEDED or FAILED).

    A run that is not QUEUED (already taken by another delivery, or finished) is returned untouched.
    `report(stage, percent, message)` mirrors progress (the `train` command prints it).
    """
    claimed = TrainRun.objects.filter(id=train_run_id, status=TrainStatus.QUEUED).update(
        status=TrainStatus.RUNNING, stage=TrainStage.DATASET, started_at=timezone.now(), heartbeat_at=timezone.now(),
        worker=f"{socket.gethostname()}:{os.getpid()}")
    run = TrainRun.objects.get(id=train_run_id)
    if not claimed:
        logger.info("train run %s is %s: nothing to do", train_run_id, run.status)
        return run
    progress = _Progress(run.id)

    def step(stage: str, percent: float, message: str = "", *, force: bool = False) -> None:
        progress(stage, percent, message, force=force)
        if report is not None:
            report(stage, percent, message)

    timings: dict[str, float] = {}
    artefact: Path | None = None
    version: ModelVersion | None = None
    try:
        started = time.perf_counter()
        step(TrainStage.DATASET, 1, "reading labels, rules and products", force=True)
        data = _dataset_build(run)
        timings["dataset"] = time.perf_counter() - started
        TrainRun.objects.filter(id=run.id).update(data_counts=data.counts)

        started = time.perf_counter()
        step(TrainStage.TRAIN, STAGE_END_PERCENT[TrainStage.DATASET], f"training on {len(data.fit):,} products",
             force=True)
        classifier = _train(run, data, step)
        timings["train"] = time.perf_counter() - started

        started = time.perf_counter()
        step(TrainStage.SAVE, STAGE_END_PERCENT[TrainStage.TRAIN], "saving the model", force=True)
        artefact = _artefact_save(run, classifier)
        timings["save"] = time.perf_counter() - started

        started = time.perf_counter()
        step(TrainStage.EVALUATE, STAGE_END_PERCENT[TrainStage.SAVE], "evaluating on the test split", force=True)
        thresholds = _rule_thresholds(classifier, data)
        metrics = _evaluate(classifier, data, thresholds)
        timings["evaluate"] = time.perf_counter() - started
        headline_metric, headline_value = headline(metrics)
        TrainRun.objects.filter(id=run.id).update(metrics=metrics, history=classifier.history_ or {})

        started = time.perf_counter()
        version = ModelVersion.objects.create(
            name=f"clf-{run.id}-{run.architecture}", train_run=run, architecture=run.architecture,
            objectives=run.objectives, artefact_path=str(artefact), classes=data.targets.classes,
            rule_classes=data.targets.rule_classes, rule_thresholds=[float(t) for t in thresholds],
            image_model_version=data.image_model_version, headline_metric=headline_metric,
            headline_value=headline_value)
        count = _predict_catalogue(version=version, classifier=classifier, thresholds=thresholds,
                                   image_model_version=data.image_model_version, step=step)
        ModelVersion.objects.filter(id=version.id).update(predictions_count=count)
        timings["predict"] = time.perf_counter() - started

        started = time.perf_counter()
        step(TrainStage.PROMOTE, STAGE_END_PERCENT[TrainStage.PREDICT], "promoting", force=True)
        outcome = model_version_promote(version=version, max_regression=run.max_regression) if run.promote \
            else PromotionOutcome.NOT_REQUESTED
        timings["promote"] = time.perf_counter() - started
        TrainRun.objects.filter(id=run.id).update(
            status=TrainStatus.SUCCEEDED, stage=TrainStage.DONE, progress_percent=100, outcome=outcome,
            progress_message=f"{headline_metric} = {_fmt(headline_value)}; {PromotionOutcome(outcome).label}",
            timings=timings, artefact_path=str(artefact), finished_at=timezone.now(), heartbeat_at=timezone.now())
        model_versions_prune(keep=classifier_settings()["keep_versions"])
    except Exception as error:  # noqa: BLE001 — any failure must leave the run FAILED and the data consistent
        logger.exception("train run %s failed", run.id)
        if version is not None:
            ModelVersion.objects.filter(id=version.id, is_active=False).delete()
        if artefact is not None and not ModelVersion.objects.filter(artefact_path=str(artefact)).exists():
            shutil.rmtree(artefact, ignore_errors=True)
        message = f"{type(error).__name__}: {error}"
        TrainRun.objects.filter(id=run.id).update(
            status=TrainStatus.FAILED, error=message + "\n\n" + traceback.format_exc(limit=8), timings=timings,
            progress_message=message[:500], finished_at=timezone.now(), heartbeat_at=timezone.now())
    run.refresh_from_db()
    return run


@dataclass
class _Data:
    fit: LabelledSet
    validation: LabelledSet
    test: LabelledSet
    targets: CatalogueTargets
    image_model_version: str
    image: bool
    counts: dict

    @property
    def classes(self):
        return self.targets.classes


def _dataset_build(run: TrainRun) -> _Data:
    from classifier.core.config import config_loads
    from similarity.selectors import similarity_settings

    targets = catalogue_targets_read()
    objectives = list(run.objectives)
    if "exclusive" in objectives and not targets.classes:
        raise TrainingDataError("the exclusive objective needs human labels, and there are none yet: label some "
                                "products first, or train with objectives=rule")
    if "rule" in objectives and not targets.rule_classes:
        raise TrainingDataError("the rule objective needs rule labels, and there are none: import and apply "
                                "legacy rules first")
    config = config_loads(run.feature_config)
    image = any(spec.kind == "dense" for spec in config.fields)
    image_model_version = similarity_settings().model_version if image else ""
    dev, test = dev_test_rows()
    dev_set = labelled_set_build(rows=dev, targets=targets, objectives=objectives,
                                 image_model_version=image_model_version, image=image)
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
    labels_by_strategy: dict[str, int] = {}
    for pid in fit.product_ids.tolist() + validation.product_ids.tolist():
        if pid in targets.exclusive:
            strategy = targets.exclusive_strategy[pid]
            labels_by_strategy[strategy] = labels_by_strategy.get(strategy, 0) + 1
    counts = {
        "train": len(fit), "validation": len(validation),
        "exclusive_labels": int(sum(labels_by_strategy.values())) if "exclusive" in objectives else 0,
        "labels_by_strategy": labels_by_strategy if "exclusive" in objectives else {},
        "rule_known": int(fit.targets.rule_known.sum() + validation.targets.rule_known.sum()) if "rule" in objectives
        else 0,
        "test_rule": int(test_set.targets.rule_known.sum()),
        "test_ground_truth": int((test_set.targets.exclusive >= 0).sum()),
        "classes": len(targets.classes) if "exclusive" in objectives else 0,
        "rule_classes": len(targets.rule_classes) if "rule" in objectives else 0,
        "with_photo": int(fit.frame.image_present.sum()) if image else 0,
    }
    if "exclusive" not in objectives:
        targets.classes = []
    if "rule" not in objectives:
        targets.rule_classes = []
    return _Data(fit=fit, validation=validation, test=test_set, targets=targets,
                 image_model_version=image_model_version, image=image, counts=counts)


def _train(run: TrainRun, data: _Data, step):
    from classifier.core.architectures import config_for_architecture
    from classifier.core.config import config_loads
    from classifier.core.estimator import ProductClassifier

    defaults = classifier_settings()
    params = {name: run.params.get(name, defaults.get(name)) for name in TRAINING_PARAMS}
    params["random_state"] = params["random_state"] if params["random_state"] is not None else run.id
    if "batch_size" not in run.params:
        # Small labelled sets (the first rounds) would get one or two steps per epoch at the default batch size:
        # keep at least ~10 steps per epoch.
        params["batch_size"] = min(params["batch_size"], max(16, math.ceil(len(data.fit) / 10)))
    TrainRun.objects.filter(id=run.id).update(data_counts={**data.counts, "batch_size": params["batch_size"],
                                                           "epochs": params["epochs"]})
    config = config_for_architecture(config_loads(run.feature_config), run.architecture)
    classifier = ProductClassifier(config=config, architecture=run.architecture, objectives=tuple(run.objectives),
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
             f"epoch {epoch + 1}/{epochs}: {'val_' if 'val_loss' in logs else ''}loss {_fmt(loss)}", force=True)

    return classifier.fit(data.fit.frame, y_fit, validation_data=validation, progress=on_epoch)


def _objective_targets(dataset: LabelledSet, objectives: Sequence[str]):
    """Return the set's targets restricted to the run's heads (classes of other heads dropped)."""
    from dataclasses import replace

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


def _rule_thresholds(classifier, data: _Data) -> np.ndarray:
    """Return per rule class the threshold tuned on the validation slice (0.5 without a slice or rule head)."""
    from classifier.core.metrics import thresholds_tune

    if not len(classifier.rule_classes_):
        return np.zeros(0)
    validation = data.validation
    known = validation.targets.rule_known if len(validation) else np.zeros(0, bool)
    if not known.any():
        return np.full(len(classifier.rule_classes_), 0.5)
    proba = classifier.predict_proba(validation.frame.take(np.flatnonzero(known)))["rule"]
    return thresholds_tune(validation.targets.rule[known], proba)


def _evaluate(classifier, data: _Data, thresholds: np.ndarray) -> dict:
    """Return the reports on the hand-labelled ground truth and on the rule-based test set (test split only)."""
    from classifier.core.metrics import report_compute

    test = data.test
    if not len(test):
        return {}
    proba = classifier.predict_proba(test.frame)
    classes = [int(c) for c in classifier.classes_]
    rule_classes = [int(c) for c in classifier.rule_classes_]
    ancestors = class_ancestors(classes) if classes else None
    rule_ancestors = class_ancestors(rule_classes) if rule_classes else None
    # Test targets were built over all labelled classes; re-index them onto the trained heads.
    all_classes = [int(c) for c in test.targets.classes]
    class_position = {category_id: index for index, category_id in enumerate(classes)}
    metrics = {}
    if classes:
        truth = np.array([class_position.get(all_classes[t], -2) if t >= 0 else -1 for t in test.targets.exclusive])
        # A test label of a class the model never saw is an error: give it an impossible index.
        labelled = truth != -1
        if labelled.any():
            truth_known = np.where(truth == -2, len(classes), truth)[labelled]
            proba_known = np.hstack([proba["exclusive"][labelled], np.zeros((labelled.sum(), 1), np.float32)])
            ancestors_ext = dict(ancestors or {})
            ancestors_ext[len(classes)] = [-1]
            report = report_compute(exclusive_true=truth_known, exclusive_proba=proba_known, ancestors=ancestors_ext)
            metrics["ground_truth"] = _jsonable(report, classes=classes + [None])
    if rule_classes and test.targets.rule_known.any():
        rule_columns = [list(map(int, test.targets.rule_classes)).index(c) for c in rule_classes]
        known = test.targets.rule_known
        report = report_compute(rule_true=test.targets.rule[:, rule_columns], rule_proba=proba["rule"],
                                rule_known=known, rule_thresholds=thresholds, rule_ancestors=rule_ancestors)
        section = _jsonable(report, classes=classes, rule_classes=rule_classes, thresholds=thresholds)
        if classes:
            # The exclusive head against the rules, where the rules name exactly one of its classes.
            single = np.full(len(test), -1)
            for row in np.flatnonzero(known):
                hits = [class_position[int(test.targets.rule_classes[j])] for j in np.flatnonzero(test.targets.rule[row])
                        if int(test.targets.rule_classes[j]) in class_position]
                if len(hits) == 1:
                    single[row] = hits[0]
            if (single >= 0).any():
                exclusive = report_compute(exclusive_true=single, exclusive_proba=proba["exclusive"],
                                           ancestors=ancestors)
                section.update(_jsonable(exclusive, classes=classes))
        metrics["rule_test"] = section
    return metrics


def headline(metrics: dict) -> tuple[str, float | None]:
    """Return the metric promotion compares: ground-truth accuracy, else rule-set accuracy, else rule micro-F1."""
    for report, section, name in (("ground_truth", "exclusive", "accuracy"), ("rule_test", "exclusive", "accuracy"),
                                  ("rule_test", "rule", "micro_f1")):
        value = metrics.get(report, {}).get(section, {}).get(name)
        if value is not None:
            return f"{report}.{section}.{name}", value
    return "", None


def _jsonable(report: dict, *, classes: Sequence[int | None] = (), rule_classes: Sequence[int] = (),
              thresholds: np.ndarray | None = None) -> dict:
    """Return a metrics report with class indices as category ids, arrays as lists and NaN as None."""
    out = {}
    if "exclusive" in report:
        section = dict(report["exclusive"])
        per_class = section.pop("per_class")
        section["per_class"] = [
            {"category": classes[int(label)], "precision": _num(p), "recall": _num(r), "f1": _num(f),
             "support": int(s)}
            for label, p, r, f, s in zip(per_class["labels"], per_class["precision"], per_class["recall"],
                                         per_class["f1"], per_class["support"]) if classes[int(label)] is not None]
        section["confused_pairs"] = [[classes[t], classes[p], int(c)] for t, p, c in section["confused_pairs"]]
        section["levels"] = {str(level): {k: _num(v) for k, v in values.items()}
                             for level, values in section.get("levels", {}).items()}
        out["exclusive"] = {k: (_num(v) if isinstance(v, (float, np.floating)) else v) for k, v in section.items()}
    if "rule" in report:
        section = report["rule"]
        per_class = [{"category": rule_classes[j], "precision": _num(section["precision"][j]),
                      "recall": _num(section["recall"][j]), "f1": _num(section["f1"][j]),
                      "support": int(section["support"][j]),
                      "threshold": _num(thresholds[j]) if thresholds is not None and len(thresholds) else 0.5}
                     for j in range(len(rule_classes))]
        levels = {str(level): {"micro_f1": _num(values["micro_f1"]), "macro_f1": _num(values["macro_f1"])}
                  for level, values in section.get("levels", {}).items()}
        out["rule"] = {"n": int(section["n"]), "micro_f1": _num(section["micro_f1"]),
                       "macro_f1": _num(section["macro_f1"]), "per_class": per_class, "levels": levels}
    return out


def _num(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _fmt(value) -> str:
    return "–" if value is None else f"{float(value):.4f}"


# --- predict --------------------------------------------------------------------------------------------------


def prediction_rows(*, product_ids: np.ndarray, proba: dict[str, np.ndarray], classes: Sequence[int],
                    rule_classes: Sequence[int], thresholds: np.ndarray) -> list[tuple]:
    """Return Prediction column tuples (product, category, confidence, top_k, entropy, margin, rule positives)."""
    import json

    rows = []
    exclusive = proba.get("exclusive")
    rule = proba.get("rule")
    if exclusive is not None and exclusive.shape[1]:
        k = min(TOP_K, exclusive.shape[1])
        top = np.argsort(-exclusive, axis=1, kind="stable")[:, :k]
        top_p = np.take_along_axis(exclusive, top, axis=1)
        clipped = np.clip(exclusive, 1e-12, 1.0)
        entropy = -(exclusive * np.log(clipped)).sum(axis=1)
        margin = top_p[:, 0] - (top_p[:, 1] if k > 1 else 0.0)
    positives = (rule >= np.asarray(thresholds)) if rule is not None and rule.shape[1] else None
    rule_ids = np.asarray(rule_classes, dtype=np.int64)
    for i, product_id in enumerate(product_ids.tolist()):
        if exclusive is not None and exclusive.shape[1]:
            row = (product_id, int(classes[top[i, 0]]), float(top_p[i, 0]),
                   json.dumps([[int(classes[c]), round(float(p), 5)] for c, p in zip(top[i], top_p[i])]),
                   float(entropy[i]), float(margin[i]))
        else:
            row = (product_id, None, None, "[]", None, None)
        rows.append(row + ((rule_ids[positives[i]].tolist() if positives is not None else []),))
    return rows


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


def predictions_write(*, version: ModelVersion, rows: list[tuple]) -> None:
    """Insert prediction rows for `version` in one statement (unnest), replacing any from an earlier attempt."""
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(Prediction._meta.db_table)
    product_ids, categories, confidences, top_ks, entropies, margins, positives = zip(*rows)
    # Postgres cannot unnest a ragged bigint[][]: the positives travel as text and are cast back per row.
    positives_text = ["{" + ",".join(map(str, ids)) + "}" for ids in positives]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (model_version_id, product_id, category_id, confidence, top_k, entropy, margin, "
            f"rule_positives, created_at) "
            f"SELECT %s, v.product_id, v.category_id, v.confidence, v.top_k::jsonb, v.entropy, v.margin, "
            f"v.positives::bigint[], now() "
            f"FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::text[], %s::float8[], %s::float8[], "
            f"%s::text[]) AS v(product_id, category_id, confidence, top_k, entropy, margin, positives) "
            f"ON CONFLICT (model_version_id, product_id) DO UPDATE SET category_id = EXCLUDED.category_id, "
            f"confidence = EXCLUDED.confidence, top_k = EXCLUDED.top_k, entropy = EXCLUDED.entropy, "
            f"margin = EXCLUDED.margin, rule_positives = EXCLUDED.rule_positives",
            [version.id, list(product_ids), list(categories), list(confidences), list(top_ks), list(entropies),
             list(margins), positives_text])


# --- promote --------------------------------------------------------------------------------------------------


def model_version_promote(*, version: ModelVersion, max_regression: float | None = None,
                          force: bool = False) -> str:
    """Make `version` the active model and move products' effective categories to its predictions, atomically.

    With `max_regression`, a version whose headline metric is worse than the active version's by more than
    that keeps the active one (returns "regression"). Labelled products keep their label; others get the
    prediction (label > prediction > rule > feed). Takes a row lock on the active version, so two promotions
    serialise.
    """
    from similarity.services.embeddings import embeddings_sync_categories

    with transaction.atomic():
        active = ModelVersion.objects.select_for_update().filter(is_active=True).first()
        if active is not None and active.id == version.id:
            return PromotionOutcome.PROMOTED
        if (not force and max_regression is not None and active is not None and active.headline_value is not None
                and version.headline_metric == active.headline_metric
                and (version.headline_value is None or version.headline_value < active.headline_value - max_regression)):
            return PromotionOutcome.REGRESSION
        ModelVersion.objects.filter(is_active=True).update(is_active=False)
        ModelVersion.objects.filter(id=version.id).update(is_active=True, activated_at=timezone.now())
        changed = _products_category_from_predictions(version=version)
        transaction.on_commit(lambda: embeddings_sync_categories(product_ids=changed) if changed else None)
    version.refresh_from_db()
    return PromotionOutcome.PROMOTED


def _products_category_from_predictions(*, version: ModelVersion) -> list[int]:
    """Set the top-1 prediction as the category of every product not labelled by a human; return changed ids.

    Products whose category came from an earlier model and that the new one leaves without a prediction (a
    rule-only model) fall back to their feed category; the next `apply_rules` re-derives rule categories.
    """
    quote = connection.ops.quote_name
    product, prediction = quote(Product._meta.db_table), quote(Prediction._meta.db_table)
    from labelapp.models import Category

    category = quote(Category._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {product} AS p SET category_id = pr.category_id, category_source = %s, "
            f"level2_id = c.level2_id, level3_id = c.level3_id, updated_at = now() "
            f"FROM {prediction} AS pr JOIN {category} AS c ON c.id = pr.category_id "
            f"WHERE pr.model_version_id = %s AND pr.product_id = p.id AND pr.category_id IS NOT NULL "
            f"AND p.category_source <> %s "
            f"AND (p.category_id IS DISTINCT FROM pr.category_id OR p.category_source <> %s) RETURNING p.id",
            [CategorySource.PREDICTION, version.id, CategorySource.LABEL, CategorySource.PREDICTION])
        changed = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            f"UPDATE {product} AS p SET category_id = p.feed_category_id, "
            f"category_source = CASE WHEN p.feed_category_id IS NULL THEN %s ELSE %s END, "
            f"level2_id = c.level2_id, level3_id = c.level3_id, updated_at = now() "
            f"FROM {product} AS q LEFT JOIN {category} AS c ON c.id = q.feed_category_id "
            f"WHERE q.id = p.id AND p.category_source = %s AND NOT EXISTS ("
            f"  SELECT 1 FROM {prediction} pr WHERE pr.model_version_id = %s AND pr.product_id = p.id "
            f"  AND pr.category_id IS NOT NULL) RETURNING p.id",
            [CategorySource.NONE, CategorySource.FEED, CategorySource.PREDICTION, version.id])
        changed += [row[0] for row in cursor.fetchall()]
    return changed


# --- housekeeping ---------------------------------------------------------------------------------------------


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
