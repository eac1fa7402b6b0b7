"""Judging a trained model on the test split: rule thresholds, metric reports, the headline metric."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from classifier.core.calibration import expected_calibration_error, reliability_bins, temperature_apply, temperature_fit
from classifier.core.metrics import report_compute, thresholds_tune
from classifier.services.dataset import LabelledSet, class_ancestors

MIN_CALIBRATION_LABELS = 30
"""Human-labelled validation products a calibration needs before the model's calibrated confidence may stand as its
precision against the legacy sources (the usual minimum for a normal approximation of a rate). With fewer, the
temperature is still fitted (on weak targets too) but the model only fills products nothing else categorises."""


def _ece_pair(raw: np.ndarray, truth: np.ndarray, temperature: float) -> dict:
    calibrated = temperature_apply(raw, temperature)
    return {"n": int(len(truth)), "ece_before": expected_calibration_error(raw, truth),
            "ece_after": expected_calibration_error(calibrated, truth),
            "reliability": [vars(row) for row in reliability_bins(calibrated, truth)],
            "reliability_before": [vars(row) for row in reliability_bins(raw, truth)]}


def calibration_fit(classifier, *, validation: LabelledSet, test: LabelledSet) -> dict:
    """Fit the exclusive head's temperature on the validation slice; return the calibration report.

    Human labels only once there are MIN_CALIBRATION_LABELS of them ("measured": the calibrated confidence then
    stands as the model's precision in arbitration), else every validation target, weak ones by their weight.
    The report gives the ECE before and after on the fitting rows and on the test split's human labels (held
    out), with reliability bins for the diagram.
    """
    if not len(classifier.classes_) or validation.targets.exclusive is None:
        return {}
    classifier.temperature_ = 1.0
    known = validation.targets.exclusive >= 0
    human = known & validation.human
    rows = human if human.sum() >= MIN_CALIBRATION_LABELS else known
    report = {"temperature": 1.0, "measured": bool(human.sum() >= MIN_CALIBRATION_LABELS),
              "fitted_on": "human labels" if rows is human else "labels and weak targets", "n": int(rows.sum()),
              "human": int(human.sum())}
    if rows.sum() < MIN_CALIBRATION_LABELS:
        # A temperature fitted on a handful of products swings to an extreme; leave the probabilities as they are.
        report["fitted_on"] = f"nothing (fewer than {MIN_CALIBRATION_LABELS} validation products)"
        rows = np.zeros_like(rows)
    if rows.any():
        raw = classifier.predict_proba(validation.frame.take(np.flatnonzero(rows)))["exclusive"]
        truth = validation.targets.exclusive[rows]
        temperature = temperature_fit(raw, truth, weights=validation.targets.exclusive_weight[rows])
        report.update(temperature=temperature, validation=_ece_pair(raw, truth, temperature))
        classifier.temperature_ = temperature
    labelled = np.flatnonzero(test.targets.exclusive >= 0) if test.targets.exclusive is not None else []
    if len(labelled):
        temperature, classifier.temperature_ = classifier.temperature_, 1.0
        raw = classifier.predict_proba(test.frame.take(labelled))["exclusive"]
        classifier.temperature_ = temperature
        report["test"] = _ece_pair(raw, test.targets.exclusive[labelled], temperature)
    return report


def rule_thresholds_tune(classifier, *, validation: LabelledSet) -> np.ndarray:
    """Return per rule class the threshold tuned on the validation slice (0.5 without a slice or rule head)."""
    if not len(classifier.rule_classes_):
        return np.zeros(0)
    known = validation.targets.rule_known if len(validation) else np.zeros(0, bool)
    if not known.any():
        return np.full(len(classifier.rule_classes_), 0.5)
    proba = classifier.predict_proba(validation.frame.take(np.flatnonzero(known)))["rule"]
    return thresholds_tune(validation.targets.rule[known], proba)


def reports_compute(classifier, *, test: LabelledSet, thresholds: np.ndarray) -> dict:
    """Return the reports on the hand-labelled ground truth and on the rule-based test set (test split only)."""
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


def fmt(value) -> str:
    return "–" if value is None else f"{float(value):.4f}"

