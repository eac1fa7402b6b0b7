"""Metrics against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from classifier.core.metrics import (
    accuracy,
    confused_pairs,
    exclusive_metrics,
    macro_f1,
    multilabel_metrics,
    per_class_scores,
    report_compute,
    rule_metrics,
    thresholds_tune,
    top_k_accuracy,
    weighted_f1,
)

# class 0: 2 of 3 found, no false alarm -> P 1, R 2/3, F1 0.8
# class 1: 1 of 2 found, 1 false alarm  -> P 1/2, R 1/2, F1 0.5
# class 2: 1 of 1 found, 1 false alarm  -> P 1/2, R 1, F1 2/3
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])


def test_exclusive_scores_match_hand_computed_values():
    scores = per_class_scores(Y_TRUE, Y_PRED)

    np.testing.assert_allclose(scores["precision"], [1, 0.5, 0.5])
    np.testing.assert_allclose(scores["recall"], [2 / 3, 0.5, 1])
    np.testing.assert_allclose(scores["f1"], [0.8, 0.5, 2 / 3])
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    assert macro_f1(Y_TRUE, Y_PRED) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert weighted_f1(Y_TRUE, Y_PRED) == pytest.approx((0.8 * 3 + 0.5 * 2 + 2 / 3 * 1) / 6)


def test_top_k_accuracy_counts_the_true_class_among_the_k_most_probable():
    proba = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    y_true = np.array([0, 1, 2])

    assert top_k_accuracy(y_true, proba, k=1) == pytest.approx(1 / 3)
    assert top_k_accuracy(y_true, proba, k=2) == pytest.approx(2 / 3)
    assert top_k_accuracy(y_true, proba, k=3) == 1.0
    assert exclusive_metrics(y_true, proba, top_k=(2,))["top2_accuracy"] == pytest.approx(2 / 3)


def test_thresholds_maximise_each_classs_f1():
    proba = np.array([[0.9, 0.5, 0.3], [0.8, 0.5, 0.1], [0.7, 0.1, 0.2], [0.3, 0.1, 0.4], [0.2, 0.1, 0.6]])
    y_true = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]])

    thresholds = thresholds_tune(y_true, proba, default=0.5)

    # column 0: cut at 0.3 -> TP 3, FP 1, FN 0 -> F1 6/7, the best of {0.5, 0.8, 0.67, 0.86, 0.75}
    # column 1: 0.5 is a tie of a positive and a negative; cutting inside it is impossible
    # column 2: no positive in validation -> the default
    np.testing.assert_allclose(thresholds, [0.3, 0.5, 0.5])


def test_multilabel_metrics_match_hand_computed_values():
    y_true = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
    y_pred = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 0]])

    metrics = multilabel_metrics(y_true, y_pred)

    # class 0: TP 1, FN 1 -> F1 2/3; class 1: TP 2, FP 1 -> F1 0.8; class 2: nothing true or predicted
    np.testing.assert_allclose(metrics["f1"], [2 / 3, 0.8, 0])
    assert metrics["micro_f1"] == pytest.approx(2 * 3 / (4 + 4))
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert rule_metrics(y_true, y_pred * 0.9, thresholds=np.array([0.5, 0.95, 0.5]))["f1"][1] == 0.0


def test_confused_pairs_are_the_most_frequent_errors_first():
    pairs = confused_pairs(np.array([0, 0, 0, 1, 2, 2]), np.array([1, 1, 0, 0, 1, 1]))

    assert pairs == [(0, 1, 2), (2, 1, 2), (1, 0, 1)]


def test_report_scores_each_tree_level_and_skips_unknown_targets():
    ancestors = {0: ["apparel", "shirts"], 1: ["apparel", "jeans"], 2: ["watches"]}
    y_true = np.array([0, 1, 2, 2, -1])
    proba = np.eye(3)[[1, 1, 2, 0, 0]] * 0.8 + 0.2 / 3
    rule_true = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 1, 1]])
    rule_proba = np.array([[0.9, 0.8, 0.1], [0.1, 0.9, 0.1], [0.2, 0.1, 0.3], [0.1, 0.1, 0.9], [0, 0, 0]])

    report = report_compute(exclusive_true=y_true, exclusive_proba=proba, ancestors=ancestors, top_k=(2,),
                            rule_true=rule_true, rule_proba=rule_proba, rule_known=np.array([1, 1, 1, 1, 0]),
                            rule_thresholds=np.array([0.5, 0.5, 0.25]), rule_ancestors=ancestors)

    exclusive = report["exclusive"]
    assert exclusive["n"] == 4 and exclusive["accuracy"] == pytest.approx(0.5)
    assert exclusive["levels"][1]["accuracy"] == pytest.approx(0.75)  # shirts→jeans is right at the top level
    assert exclusive["levels"][2]["accuracy"] == pytest.approx(0.5)
    assert exclusive["confused_pairs"] == [(0, 1, 1), (2, 0, 1)]
    rule = report["rule"]
    assert rule["n"] == 4 and rule["micro_f1"] == pytest.approx(2 * 4 / (5 + 4))
    top = rule["levels"][1]
    assert list(top["labels"]) == ["apparel", "watches"]
    assert top["micro_f1"] == pytest.approx(1.0)  # the false "jeans" on a shirt is right at the top level
