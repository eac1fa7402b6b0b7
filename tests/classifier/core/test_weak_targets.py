"""Weak targets in the classifier core: soft target rows, the observation-likelihood loss, warm-started fits."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from classifier.core.estimator import ObservationLikelihoodLoss, ProductClassifier, masked_targets, objective_losses
from classifier.core.frames import Targets
from classifier.core.weak_targets import evidence_posterior, evidence_rows


def test_soft_rows_are_checked_and_follow_take():
    soft = np.array([[0, 0, 0], [0.5, 0.5, 0], [0, 0, 0]], np.float32)

    targets = Targets(exclusive=[2, -1, -1], classes=("a", "b", "c"), exclusive_soft=soft,
                      exclusive_weight=[1, 0.4, 0.3])

    np.testing.assert_array_equal(targets.exclusive_known, [True, True, False])
    np.testing.assert_allclose(targets.take([1, 0]).exclusive_distribution(), [[0.5, 0.5, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="sum to 1"):
        Targets(exclusive=[-1], classes=("a", "b"), exclusive_soft=[[0.5, 0.2]])
    with pytest.raises(ValueError, match=r"\[1, 2\]"):
        Targets(exclusive=[-1], classes=("a", "b"), exclusive_soft=[[0.5, 0.25, 0.25]])


def test_dense_masked_targets_hold_one_hot_classes_soft_rows_and_weigh_out_the_rest():
    targets = Targets(exclusive=[1, -1, -1], classes=("a", "b", "c"), exclusive_weight=[1, 0.6, 0.9],
                      exclusive_soft=[[0.2, 0.2, 0.6], [0.5, 0, 0.5], [0, 0, 0]])

    keras_targets, weights = masked_targets(targets, ("exclusive",), dense=True)

    np.testing.assert_allclose(keras_targets["exclusive"], [[0, 1, 0], [0.5, 0, 0.5], [0, 0, 0]])
    np.testing.assert_allclose(weights["exclusive"], [1, 0.6, 0])


def test_observation_likelihood_is_the_cross_entropy_on_a_class_and_minus_log_the_named_mass_on_a_set():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3]], np.float32)
    one_hot_and_set = np.array([[1, 0, 0], [0, 0.5, 0.5], [1, 0, 0]], np.float32)

    loss = float(ObservationLikelihoodLoss()(one_hot_and_set, proba, sample_weight=np.array([1, 1, 0], np.float32)))
    cross_entropy = float(objective_losses(("exclusive",), exclusive_loss="cross_entropy")["exclusive"](
        one_hot_and_set[:1], proba[:1]))

    assert loss == pytest.approx((-np.log(0.7) - np.log(0.5 * 0.3 + 0.5 * 0.6)) / 2, rel=1e-5)
    assert cross_entropy == pytest.approx(-np.log(0.7), rel=1e-5)
    with pytest.raises(ValueError, match="unknown exclusive loss"):
        objective_losses(("exclusive",), exclusive_loss="hinge")


def test_partial_labels_are_resolved_by_the_products_that_share_their_words(make_products, title_only_config,
                                                                                  training):
    # Given 60 products of which two per class are labelled; every other one is only known to be its class or the
    # next one. The candidate sets alone cannot tell, the labelled products sharing their words can.
    frame, targets, classes = make_products(60, seed=2)
    labelled = np.concatenate([np.flatnonzero(classes == c)[:2] for c in range(3)])
    exclusive = np.full(60, -1)
    exclusive[labelled] = classes[labelled]
    soft = np.zeros((60, 3), np.float32)
    soft[np.arange(60), classes] = 0.5
    soft[np.arange(60), (classes + 1) % 3] = 0.5
    partial = dataclasses.replace(targets, exclusive=exclusive, exclusive_soft=soft, rule=None, rule_known=None,
                                  rule_classes=())

    classifier = ProductClassifier(config=title_only_config, architecture="logreg",
                                   exclusive_loss="observation_likelihood", **{**training, "epochs": 30})
    proba = classifier.fit(frame, partial).predict_proba(frame)["exclusive"]

    assert np.mean(proba.argmax(axis=1) == classes) >= 0.95
    assert classifier.get_params()["exclusive_loss"] == "observation_likelihood"


def test_soft_targets_with_the_default_loss_teach_their_distribution(products, title_only_config, training):
    frame, targets, classes = products
    soft = np.full((60, 3), 0.1, np.float32)
    soft[np.arange(60), classes] = 0.8
    smoothed = Targets(exclusive=np.full(60, -1), classes=targets.classes, exclusive_soft=soft)

    proba = ProductClassifier(config=title_only_config, architecture="logreg", **{**training, "epochs": 30}).fit(
        frame, smoothed).predict_proba(frame)["exclusive"]

    assert np.mean(proba.argmax(axis=1) == classes) >= 0.95
    assert 0.6 < proba.max(axis=1).mean() < 0.9  # fitted to 0.8, not pushed to certainty


def test_warm_start_continues_from_the_fitted_weights_and_vocabulary(make_products, title_only_config, training):
    frame, targets, classes = make_products(60, seed=3)
    classifier = ProductClassifier(config=title_only_config, architecture="logreg", **training).fit(frame, targets)
    vocabulary = classifier.config_
    subset = np.arange(6)

    classifier.set_params(warm_start=True, epochs=1).fit(frame.take(subset), targets.take(subset))

    assert classifier.config_ == vocabulary
    assert np.mean(classifier.predict_proba(frame)["exclusive"].argmax(axis=1) == classes) >= 0.95
    with pytest.raises(ValueError, match="classes differ"):
        classifier.fit(frame, dataclasses.replace(targets, classes=("x", "y", "z")))


def test_the_loss_choice_survives_save_and_load(make_products, title_only_config, training, tmp_path):
    frame, targets, _ = make_products(30, seed=4)
    classifier = ProductClassifier(config=title_only_config, architecture="logreg",
                                   exclusive_loss="observation_likelihood", **{**training, "epochs": 2})
    classifier.fit(frame, targets).save(tmp_path / "model")

    reloaded = ProductClassifier.load(tmp_path / "model")

    assert reloaded.exclusive_loss == "observation_likelihood" and reloaded.warm_start is False
    np.testing.assert_allclose(reloaded.predict_proba(frame)["exclusive"], classifier.predict_proba(frame)["exclusive"],
                               atol=1e-6)


def test_evidence_posterior_lets_the_product_overrule_the_evidence_only_where_the_model_knows():
    # Given rules saying "class 0" with precision 0.6 (the rest spread over classes 1 and 2), and a model of the human
    # labels: sure of class 1 for the first product, knowing nothing (its prior) about the second.
    evidence = np.array([[0.6, 0.2, 0.2], [0.6, 0.2, 0.2]])
    prior = np.array([0.5, 0.25, 0.25])
    proba = np.array([[0.05, 0.9, 0.05], prior])

    posterior = evidence_posterior(evidence, proba, prior)

    assert posterior[0].argmax() == 1
    np.testing.assert_allclose(posterior[1], evidence[1], atol=1e-6)
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(evidence_posterior(evidence[:1], np.array([[0.0, 0.0, 1.0]]) * [[1, 1, 0]], prior),
                               evidence[:1], atol=1e-6)  # ruled out everywhere: the evidence stands
    with pytest.raises(ValueError, match="do not agree"):
        evidence_posterior(evidence, proba[:, :2], prior)


def test_evidence_rows_share_the_best_precision_among_the_named_and_learn_from_labels_of_the_same_set():
    # Given rules naming classes 0 and 1 (precisions 0.6 and 0.3) among 5; then 3 labelled products of that set
    # that all turned out to be class 2.
    rows = evidence_rows([{0: 0.6, 1: 0.3}, {0: 0.6, 1: 0.3}], 5, observed=[None, {2: 3}], shrink=10)

    np.testing.assert_allclose(rows[0], [0.4, 0.2, 0.4 / 3, 0.4 / 3, 0.4 / 3], atol=1e-6)
    np.testing.assert_allclose(rows[1, :3], [10 * 0.4 / 13, 10 * 0.2 / 13, (3 + 10 * 0.4 / 3) / 13], atol=1e-6)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-6)
    assert rows[1, 3] == pytest.approx(rows[1, 4]) and rows[1, 3] == pytest.approx(10 * 0.4 / 3 / 13, rel=1e-5)
    with pytest.raises(ValueError, match="names no class"):
        evidence_rows([{}], 5, shrink=10)
