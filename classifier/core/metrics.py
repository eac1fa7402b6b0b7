"""Evaluation metrics, NumPy only.

exclusive (one class per product): accuracy, top-k accuracy, macro and weighted F1, most-confused pairs.
rule (multi-label): per-class precision / recall / F1 at per-class thresholds tuned on validation, micro
and macro F1. Both also per taxonomy level, given `ancestors`: class index → ancestor ids per level, top
level first, ending with the class's own id (a shorter path repeats its deepest id at deeper levels). A
prediction is right at level L when its level-L ancestor matches the true one's.
"""

from __future__ import annotations

from collections import Counter
from typing import Hashable, Mapping, Sequence

import numpy as np

Ancestors = Mapping[int, Sequence[Hashable]]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Return the share of products whose predicted class int [n] equals the true class int [n]."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, *, k: int) -> float:
    """Return the share of products whose true class int [n] is among the k most probable of proba [n, C]."""
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    if not len(y_true):
        return float("nan")
    top = np.argpartition(-proba, min(k, proba.shape[1]) - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == y_true[:, None], axis=1)))


def per_class_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Return per-class precision, recall, F1 and support over the classes in y_true or y_pred (`labels`)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels, encoded = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    true_index, pred_index = encoded[:len(y_true)], encoded[len(y_true):]
    n_labels = len(labels)
    support = np.bincount(true_index, minlength=n_labels)
    predicted = np.bincount(pred_index, minlength=n_labels)
    hits = np.bincount(true_index[true_index == pred_index], minlength=n_labels)
    return {"labels": labels, **_prf(hits, predicted, support)}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Return the unweighted mean F1 over the classes in y_true or y_pred (scikit-learn's "macro")."""
    f1 = per_class_scores(y_true, y_pred)["f1"]
    return float(f1.mean()) if len(f1) else float("nan")


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Return the mean per-class F1 weighted by true support (scikit-learn's "weighted")."""
    scores = per_class_scores(y_true, y_pred)
    total = scores["support"].sum()
    return float((scores["f1"] * scores["support"]).sum() / total) if total else float("nan")


def exclusive_metrics(y_true: np.ndarray, proba: np.ndarray, *, top_k: Sequence[int] = (3, 5)) -> dict:
    """Return accuracy, top-k accuracies, macro and weighted F1 of proba [n, C] against class indices int [n]."""
    y_pred = np.asarray(proba).argmax(axis=1)
    metrics = {"n": int(len(y_true)), "accuracy": accuracy(y_true, y_pred),
               "macro_f1": macro_f1(y_true, y_pred), "weighted_f1": weighted_f1(y_true, y_pred)}
    metrics.update({f"top{k}_accuracy": top_k_accuracy(y_true, proba, k=k) for k in top_k})
    return metrics


def thresholds_tune(y_true: np.ndarray, proba: np.ndarray, *, default: float = 0.5) -> np.ndarray:
    """Return per class the threshold float [R] that maximises its F1 on (validation) targets 0/1 [n, R].

    A product is predicted positive when proba >= threshold. Classes without a positive keep `default`.
    """
    y_true, proba = np.asarray(y_true) > 0, np.asarray(proba, dtype=np.float64)
    thresholds = np.full(proba.shape[1], default, dtype=np.float64)
    for column in range(proba.shape[1]):
        positives = y_true[:, column].sum()
        if positives == 0:
            continue
        order = np.argsort(-proba[:, column], kind="stable")
        scores, truth = proba[order, column], y_true[order, column]
        true_positives = np.cumsum(truth)
        predicted = np.arange(1, len(scores) + 1)
        f1 = 2 * true_positives / (predicted + positives)  # 2TP / (2TP + FP + FN)
        # Only cut between distinct scores: every product tied with the threshold is predicted positive.
        f1[:-1][scores[1:] == scores[:-1]] = -1
        thresholds[column] = scores[int(np.argmax(f1))]
    return thresholds


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Return per-class precision / recall / F1 / support and micro / macro F1 of 0/1 predictions [n, R].

    Macro F1 averages over the classes with a true or predicted positive.
    """
    y_true, y_pred = np.asarray(y_true) > 0, np.asarray(y_pred) > 0
    hits = (y_true & y_pred).sum(axis=0)
    predicted, support = y_pred.sum(axis=0), y_true.sum(axis=0)
    scores = _prf(hits, predicted, support)
    active = (support + predicted) > 0
    micro_denominator = predicted.sum() + support.sum()
    return {**scores, "n": int(len(y_true)),
            "micro_f1": float(2 * hits.sum() / micro_denominator) if micro_denominator else float("nan"),
            "macro_f1": float(scores["f1"][active].mean()) if active.any() else float("nan")}


def rule_metrics(y_true: np.ndarray, proba: np.ndarray, *, thresholds: np.ndarray | float = 0.5) -> dict:
    """Return `multilabel_metrics` of proba [n, R] thresholded per class (float [R] or one float)."""
    return multilabel_metrics(y_true, np.asarray(proba) >= np.asarray(thresholds))


def level_labels(classes: np.ndarray, ancestors: Ancestors, *, level: int) -> np.ndarray:
    """Return the level-`level` (0 = top) ancestor id of each class index int [n], object [n]."""
    labels = np.empty(len(classes), dtype=object)
    labels[:] = [_ancestor(ancestors, int(c), level) for c in classes]
    return labels


def level_multi_hot(y: np.ndarray, ancestors: Ancestors, *, level: int,
                    labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (bool [n, L] multi-hot over level ancestors, ids [L]) of class multi-hot [n, R]."""
    y = np.asarray(y) > 0
    column_labels = level_labels(np.arange(y.shape[1]), ancestors, level=level)
    if labels is None:
        labels = np.array(sorted(set(column_labels), key=str), dtype=object)
    index = {label: position for position, label in enumerate(labels)}
    mapping = np.zeros((y.shape[1], len(labels)), dtype=np.int64)
    mapping[np.arange(y.shape[1]), [index[label] for label in column_labels]] = 1
    return (y.astype(np.int64) @ mapping) > 0, labels


def confused_pairs(y_true: np.ndarray, y_pred: np.ndarray, *, top: int = 10) -> list[tuple[int, int, int]]:
    """Return the `top` most frequent (true class, predicted class, count) errors, most frequent first."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = y_true != y_pred
    errors = Counter(zip(y_true[wrong].tolist(), y_pred[wrong].tolist()))
    return [(true, pred, count) for (true, pred), count in
            sorted(errors.items(), key=lambda item: (-item[1], item[0]))[:top]]


def report_compute(*, exclusive_true: np.ndarray | None = None, exclusive_proba: np.ndarray | None = None,
                   rule_true: np.ndarray | None = None, rule_proba: np.ndarray | None = None,
                   rule_known: np.ndarray | None = None, rule_thresholds: np.ndarray | float = 0.5,
                   ancestors: Ancestors | None = None, rule_ancestors: Ancestors | None = None,
                   top_k: Sequence[int] = (3, 5), n_confused: int = 10) -> dict:
    """Return the metrics report of one evaluation set (e.g. the rule-based test set, or the ground truth).

    exclusive: class indices int [n] (-1 = no label, skipped) and proba [n, C]. rule: targets 0/1 [n, R],
    proba [n, R], `rule_known` bool [n] (rows the rules never saw are skipped) and per-class thresholds.
    With `ancestors` (exclusive) / `rule_ancestors` (rule), every metric also per level under "levels",
    keyed 1 (top) to the deepest level.
    """
    report = {}
    if exclusive_true is not None and exclusive_proba is not None:
        labelled = np.asarray(exclusive_true) >= 0
        y_true, proba = np.asarray(exclusive_true)[labelled], np.asarray(exclusive_proba)[labelled]
        y_pred = proba.argmax(axis=1)
        section = exclusive_metrics(y_true, proba, top_k=top_k)
        section["confused_pairs"] = confused_pairs(y_true, y_pred, top=n_confused)
        section["per_class"] = per_class_scores(y_true, y_pred)
        if ancestors is not None:
            section["levels"] = {}
            for level in range(_depth(ancestors)):
                true_level = level_labels(y_true, ancestors, level=level)
                pred_level = level_labels(y_pred, ancestors, level=level)
                top_classes = np.argsort(-proba, axis=1)[:, :max(top_k, default=1)]
                level_metrics = {"accuracy": accuracy(true_level, pred_level),
                                 "macro_f1": macro_f1(true_level, pred_level),
                                 "weighted_f1": weighted_f1(true_level, pred_level)}
                for k in top_k:
                    top_level = np.array([[_ancestor(ancestors, int(c), level) for c in row[:k]]
                                          for row in top_classes], dtype=object).reshape(len(y_true), -1)
                    level_metrics[f"top{k}_accuracy"] = (float(np.mean(np.any(top_level == true_level[:, None], axis=1)))
                                                         if len(y_true) else float("nan"))
                section["levels"][level + 1] = level_metrics
        report["exclusive"] = section
    if rule_true is not None and rule_proba is not None:
        known = np.ones(len(rule_true), bool) if rule_known is None else np.asarray(rule_known, bool)
        y_true, y_pred = np.asarray(rule_true)[known] > 0, np.asarray(rule_proba)[known] >= np.asarray(rule_thresholds)
        section = multilabel_metrics(y_true, y_pred)
        if rule_ancestors is not None:
            section["levels"] = {}
            for level in range(_depth(rule_ancestors)):
                true_level, labels = level_multi_hot(y_true, rule_ancestors, level=level)
                pred_level, _ = level_multi_hot(y_pred, rule_ancestors, level=level, labels=labels)
                section["levels"][level + 1] = {"labels": labels, **multilabel_metrics(true_level, pred_level)}
        report["rule"] = section
    return report


def _prf(hits: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, hits / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _ancestor(ancestors: Ancestors, class_index: int, level: int) -> Hashable:
    path = ancestors[class_index]
    return path[min(level, len(path) - 1)]


def _depth(ancestors: Ancestors) -> int:
    return max((len(path) for path in ancestors.values()), default=0)
