"""Ensembles of trained classifiers, with the same `predict_proba` contract as ProductClassifier.

AveragingEnsemble averages the members' probabilities; StackingEnsemble fits a logistic-regression
meta-learner (NumPy) on the members' log-probabilities for a validation set the members were not trained on.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from classifier.core.frames import ProductFrame, Targets

EPSILON = 1e-7


class ProbabilisticClassifier(Protocol):
    classes_: np.ndarray
    rule_classes_: np.ndarray

    def predict_proba(self, X: ProductFrame) -> dict[str, np.ndarray]: ...


class AveragingEnsemble:
    """Average per head the probabilities of trained classifiers that share their class lists."""

    def __init__(self, *, classifiers: Sequence[ProbabilisticClassifier], weights: Sequence[float] | None = None):
        self.classifiers = classifiers
        self.weights = weights

    def fit(self, X: ProductFrame | None = None, y: Targets | None = None) -> "AveragingEnsemble":
        """Check the members agree on their classes (they are trained already); return self."""
        self.classes_, self.rule_classes_ = _shared_classes(self.classifiers)
        weights = np.ones(len(self.classifiers)) if self.weights is None else np.asarray(self.weights, float)
        if len(weights) != len(self.classifiers) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("weights must be one non-negative number per classifier, not all zero")
        self.weights_ = weights / weights.sum()
        return self

    def predict_proba(self, X: ProductFrame) -> dict[str, np.ndarray]:
        """Return per head the weighted mean of the members' probabilities ([n, C] / [n, R])."""
        if not hasattr(self, "weights_"):
            self.fit()
        sums: dict[str, np.ndarray] = {}
        totals: dict[str, float] = {}
        for classifier, weight in zip(self.classifiers, self.weights_):
            for head, proba in classifier.predict_proba(X).items():
                sums[head] = sums.get(head, 0) + weight * proba
                totals[head] = totals.get(head, 0.0) + weight
        return {head: (sums[head] / totals[head]).astype(np.float32) for head in sums}


class StackingEnsemble:
    """Stack trained classifiers with a logistic regression per head on their log-probabilities.

    exclusive: a multinomial logistic regression on all members' log-probabilities [n, members x C];
    rule: per rule class, a logistic regression on the members' logits for that class. Fit it on a
    validation set that the members did not train on.
    """

    def __init__(self, *, classifiers: Sequence[ProbabilisticClassifier], l2: float = 1e-3, max_iter: int = 300,
                 learning_rate: float = 0.05):
        self.classifiers = classifiers
        self.l2 = l2
        self.max_iter = max_iter
        self.learning_rate = learning_rate

    def fit(self, X: ProductFrame, y: Targets) -> "StackingEnsemble":
        """Fit the meta-learners on the members' predictions for validation products X with targets y."""
        self.classes_, self.rule_classes_ = _shared_classes(self.classifiers)
        member_probas = [classifier.predict_proba(X) for classifier in self.classifiers]
        self.coefficients_ = {}
        if len(self.classes_) and y.exclusive is not None:
            known = y.exclusive >= 0
            features = _exclusive_features(member_probas)[known]
            self.coefficients_["exclusive"] = softmax_regression_fit(
                features, y.exclusive[known], n_classes=len(self.classes_), l2=self.l2,
                iterations=self.max_iter, learning_rate=self.learning_rate)
        if len(self.rule_classes_) and y.rule is not None:
            features = _rule_features(member_probas)[y.rule_known]
            self.coefficients_["rule"] = binary_regressions_fit(
                features, y.rule[y.rule_known], l2=self.l2, iterations=self.max_iter,
                learning_rate=self.learning_rate)
        return self

    def predict_proba(self, X: ProductFrame) -> dict[str, np.ndarray]:
        """Return per head the meta-learner's probabilities ([n, C] softmax, [n, R] sigmoid)."""
        member_probas = [classifier.predict_proba(X) for classifier in self.classifiers]
        outputs = {}
        if "exclusive" in self.coefficients_:
            weights, bias = self.coefficients_["exclusive"]
            outputs["exclusive"] = _softmax(_exclusive_features(member_probas) @ weights + bias).astype(np.float32)
        if "rule" in self.coefficients_:
            weights, bias = self.coefficients_["rule"]
            outputs["rule"] = _sigmoid(np.einsum("nmr,mr->nr", _rule_features(member_probas), weights)
                                       + bias).astype(np.float32)
        return outputs


def softmax_regression_fit(features: np.ndarray, y: np.ndarray, *, n_classes: int, l2: float = 1e-3,
                           iterations: int = 300, learning_rate: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Fit multinomial logistic regression on features [n, d], classes int [n]; return (weights [d, C], bias [C]).

    Full-batch Adam on the mean cross-entropy + l2/2 * ||weights||^2, from zeros (deterministic).
    """
    n, d = features.shape
    targets = np.eye(n_classes)[y]
    params = [np.zeros((d, n_classes)), np.zeros(n_classes)]

    def gradients(weights, bias):
        error = (_softmax(features @ weights + bias) - targets) / n
        return [features.T @ error + l2 * weights, error.sum(axis=0)]

    return tuple(_adam(params, gradients, iterations=iterations, learning_rate=learning_rate))


def binary_regressions_fit(features: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, iterations: int = 300,
                           learning_rate: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Fit one logistic regression per class on features [n, d, R], targets 0/1 [n, R]; return ([d, R], [R])."""
    n, d, n_classes = features.shape
    params = [np.zeros((d, n_classes)), np.zeros(n_classes)]

    def gradients(weights, bias):
        error = (_sigmoid(np.einsum("ndr,dr->nr", features, weights) + bias) - y) / n
        return [np.einsum("ndr,nr->dr", features, error) + l2 * weights, error.sum(axis=0)]

    return tuple(_adam(params, gradients, iterations=iterations, learning_rate=learning_rate))


def _adam(params, gradients, *, iterations, learning_rate, beta1=0.9, beta2=0.999):
    moments = [np.zeros_like(p) for p in params]
    velocities = [np.zeros_like(p) for p in params]
    for step in range(1, iterations + 1):
        for index, gradient in enumerate(gradients(*params)):
            moments[index] = beta1 * moments[index] + (1 - beta1) * gradient
            velocities[index] = beta2 * velocities[index] + (1 - beta2) * gradient ** 2
            corrected = moments[index] / (1 - beta1 ** step)
            params[index] = params[index] - learning_rate * corrected / (
                np.sqrt(velocities[index] / (1 - beta2 ** step)) + 1e-8)
    return params


def _exclusive_features(member_probas: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.log(np.clip(proba["exclusive"], EPSILON, 1.0)) for proba in member_probas], axis=1)


def _rule_features(member_probas: list[dict[str, np.ndarray]]) -> np.ndarray:
    """Return the members' logits [n, members, R] of the rule head."""
    proba = np.stack([np.clip(p["rule"], EPSILON, 1 - EPSILON) for p in member_probas], axis=1)
    return np.log(proba) - np.log1p(-proba)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * logits))


def _shared_classes(classifiers: Sequence[ProbabilisticClassifier]) -> tuple[np.ndarray, np.ndarray]:
    if not classifiers:
        raise ValueError("an ensemble needs at least one classifier")
    classes = [tuple(getattr(c, "classes_", ())) for c in classifiers]
    rule_classes = [tuple(getattr(c, "rule_classes_", ())) for c in classifiers]
    exclusive = {c for c in classes if c}
    rule = {c for c in rule_classes if c}
    if len(exclusive) > 1 or len(rule) > 1:
        raise ValueError("the ensemble's classifiers must share their class lists")
    return (np.asarray(next(iter(exclusive), ()), dtype=object), np.asarray(next(iter(rule), ()), dtype=object))
