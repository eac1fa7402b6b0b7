"""Ensembles: averaging and stacking, on stub members (exact) and on trained classifiers (the contract)."""
from __future__ import annotations

import numpy as np

from classifier.core.ensembles import AveragingEnsemble, StackingEnsemble
from classifier.core.frames import ProductFrame, Targets

CLASSES = ("a", "b", "c")


class StubClassifier:
    """Return fixed probabilities per product id (the title)."""

    classes_ = np.asarray(CLASSES, dtype=object)
    rule_classes_ = np.asarray(CLASSES, dtype=object)

    def __init__(self, exclusive: np.ndarray, rule: np.ndarray):
        self.exclusive, self.rule = exclusive, rule

    def predict_proba(self, X: ProductFrame) -> dict[str, np.ndarray]:
        rows = np.array([int(title) for title in X.title])
        return {"exclusive": self.exclusive[rows], "rule": self.rule[rows]}


def _members(n: int, seed: int = 0):
    """Return (y int [n], a weakly right member, a member that is confidently wrong by one class)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    onehot = np.eye(3)[y]
    weak = 0.4 * onehot + 0.6 * rng.dirichlet(np.ones(3), n)
    shifted = 0.9 * np.eye(3)[(y + 1) % 3] + 0.1 / 3
    return y, StubClassifier(weak, weak), StubClassifier(shifted, 0.9 * onehot + 0.05)


def test_averaging_returns_the_weighted_mean_of_the_members():
    _, weak, shifted = _members(10)
    frame = ProductFrame(title=[str(i) for i in range(10)])

    proba = AveragingEnsemble(classifiers=[weak, shifted], weights=[3, 1]).fit().predict_proba(frame)

    np.testing.assert_allclose(proba["exclusive"], 0.75 * weak.exclusive + 0.25 * shifted.exclusive, rtol=1e-6)
    np.testing.assert_allclose(proba["rule"], 0.75 * weak.rule + 0.25 * shifted.rule, rtol=1e-6)


def test_stacking_learns_how_much_to_trust_each_member():
    y, weak, shifted = _members(400)
    validation = ProductFrame(title=[str(i) for i in range(200)])
    test = ProductFrame(title=[str(i) for i in range(200, 400)])
    targets = Targets(exclusive=y[:200], classes=CLASSES, rule=np.eye(3)[y[:200]], rule_classes=CLASSES)

    stacked = StackingEnsemble(classifiers=[weak, shifted]).fit(validation, targets).predict_proba(test)
    averaged = AveragingEnsemble(classifiers=[weak, shifted]).predict_proba(test)

    stacked_accuracy = np.mean(stacked["exclusive"].argmax(axis=1) == y[200:])
    assert stacked_accuracy >= 0.98 > np.mean(averaged["exclusive"].argmax(axis=1) == y[200:])
    np.testing.assert_allclose(stacked["exclusive"].sum(axis=1), 1.0, atol=1e-5)
    assert stacked["rule"].shape == (200, 3)
    assert np.mean((stacked["rule"] > 0.5) == np.eye(3)[y[200:]].astype(bool)) >= 0.98


def test_ensembles_of_trained_classifiers_keep_the_predict_proba_contract(trained, products):
    frame, targets, classes = products
    members = [trained("logreg"), trained("wide_deep")]

    averaged = AveragingEnsemble(classifiers=members).predict_proba(frame)
    stacked = StackingEnsemble(classifiers=members).fit(frame, targets).predict_proba(frame)

    for proba in (averaged, stacked):
        assert proba["exclusive"].shape == (60, 3) and proba["rule"].shape == (60, 3)
        assert np.mean(proba["exclusive"].argmax(axis=1) == classes) >= 0.95
