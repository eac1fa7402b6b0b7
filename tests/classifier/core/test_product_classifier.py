"""ProductClassifier: every architecture learns, heads are masked, reloads predict identically, inputs may be missing."""
from __future__ import annotations

import numpy as np
import pytest

from classifier.core.architectures import ARCHITECTURES
from classifier.core.estimator import ProductClassifier, masked_targets, objective_losses
from classifier.core.frames import ProductFrame, Targets

ALL_ARCHITECTURES = ["logreg", "dnn", "wide_deep", "cnn", "rnn", "image", "multimodal"]


def test_every_architecture_is_registered():
    assert sorted(ARCHITECTURES) == sorted(ALL_ARCHITECTURES)


@pytest.mark.parametrize("architecture", ALL_ARCHITECTURES)
def test_architecture_overfits_a_tiny_set(trained, products, architecture):
    frame, _, classes = products

    classifier = trained(architecture)
    proba = classifier.predict_proba(frame)

    assert proba["exclusive"].shape == (len(frame), 3) and proba["rule"].shape == (len(frame), 3)
    np.testing.assert_allclose(proba["exclusive"].sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(proba["exclusive"].argmax(axis=1) == classes) >= 0.95
    assert np.mean(proba["rule"].argmax(axis=1) == classes) >= 0.95
    assert list(classifier.predict(frame.take([0, 1, 2]))) == ["shirts", "jeans", "watches"]


@pytest.mark.parametrize("architecture", ALL_ARCHITECTURES)
def test_reloaded_classifier_predicts_identically_on_raw_input(trained, products, architecture, tmp_path):
    frame, _, _ = products
    classifier = trained(architecture)
    mixed = ProductFrame(title=list(frame.title[:4]) + ["", "shirt"], brand=["acme", "", None, "unseen", "", ""],
                         image=np.vstack([frame.image[:4], np.zeros((2, frame.image.shape[1]), np.float32)]))

    classifier.save(tmp_path / "model")
    reloaded = ProductClassifier.load(tmp_path / "model")

    for name in ("exclusive", "rule"):
        np.testing.assert_allclose(reloaded.predict_proba(mixed)[name], classifier.predict_proba(mixed)[name],
                                   atol=1e-6)
    np.testing.assert_allclose(reloaded.embed(mixed), classifier.embed(mixed), atol=1e-6)
    assert list(reloaded.classes_) == ["shirts", "jeans", "watches"]
    assert reloaded.architecture == architecture and reloaded.config_ == classifier.config_


@pytest.mark.parametrize("architecture", ["wide_deep", "rnn"])
def test_products_with_every_input_missing_still_get_a_prediction(trained, architecture):
    empty = ProductFrame(title=["", "", ""], description=[None, "", ""])  # no brand, gender or image columns

    proba = trained(architecture).predict_proba(empty)

    assert proba["exclusive"].shape == (3, 3) and np.all(np.isfinite(proba["exclusive"]))
    np.testing.assert_allclose(proba["exclusive"].sum(axis=1), 1.0, atol=1e-5)
    assert np.all((proba["rule"] >= 0) & (proba["rule"] <= 1))


def test_embed_returns_the_trunk_and_progress_is_reported(trained, products, config, training):
    frame, _, _ = products
    classifier = trained("wide_deep")

    embedding = classifier.embed(frame)

    assert embedding.shape == (len(frame), config.model.hidden_units)
    assert classifier.progress_calls == list(range(training["epochs"]))
    assert len(classifier.history_["loss"]) == training["epochs"]
    assert trained("logreg").embed(frame).shape == (len(frame), 6)  # a linear model's embedding: its logits


def test_masked_targets_weight_out_products_without_a_target():
    targets = Targets(exclusive=np.array([2, -1, 0]), classes=("a", "b", "c"),
                      rule=np.array([[1, 0], [np.nan, 7], [0, 1]]), rule_known=np.array([True, False, True]),
                      rule_classes=("x", "y"))

    keras_targets, weights = masked_targets(targets, ("exclusive", "rule"))

    np.testing.assert_array_equal(weights["exclusive"], [1, 0, 1])
    np.testing.assert_array_equal(keras_targets["exclusive"], [2, 0, 0])
    np.testing.assert_array_equal(weights["rule"], [1, 0, 1])
    np.testing.assert_array_equal(keras_targets["rule"], [[1, 0], [0, 0], [0, 1]])


def test_masked_rows_do_not_change_the_loss():
    losses = objective_losses(("exclusive", "rule"))
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], np.float32)
    weights = np.array([1, 0, 1], np.float32)
    garbage_a, garbage_b = np.array([0, 0, 1]), np.array([0, 2, 1])

    loss_a = float(losses["exclusive"](garbage_a, proba, sample_weight=weights))
    loss_b = float(losses["exclusive"](garbage_b, proba, sample_weight=weights))

    assert loss_a == pytest.approx(loss_b)
    assert loss_a == pytest.approx(-(np.log(0.7) + np.log(0.4)) / 2, rel=1e-5)  # mean over the 2 known rows
    rule_proba = np.array([[0.9, 0.2], [0.5, 0.5]], np.float32)
    rule_loss = float(losses["rule"](np.array([[1, 0], [1, 1]], np.float32), rule_proba,
                                     sample_weight=np.array([1, 0], np.float32)))
    assert rule_loss == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2, rel=1e-4)


def test_heads_learn_only_from_products_with_a_target(make_products, title_only_config, training):
    # Given 60 products: watches (class 2) are mostly unlabelled, and the rules never saw two products in three,
    # whose rule rows hold the opposite of the truth. Unmasked, "unlabelled" would read as class 0 and the
    # garbage rule rows would outvote the real ones.
    frame, targets, classes = make_products(60, seed=1)
    exclusive = targets.exclusive.copy()
    exclusive[np.flatnonzero(classes == 2)[4:]] = -1
    rule_known = np.arange(60) // 3 % 3 == 0  # a third of the products, every class among them
    rule = np.where(rule_known[:, None], targets.rule, 1 - targets.rule)
    masked = Targets(exclusive=exclusive, classes=targets.classes, rule=rule, rule_known=rule_known,
                     rule_classes=targets.rule_classes)

    classifier = ProductClassifier(config=title_only_config, architecture="logreg",
                                   objectives=("exclusive", "rule"), **{**training, "epochs": 40})
    proba = classifier.fit(frame, masked).predict_proba(frame)

    assert np.mean(proba["exclusive"].argmax(axis=1) == classes) >= 0.95
    own_rule = proba["rule"][np.arange(60), classes]
    other_rules = np.delete(proba["rule"].ravel(), np.arange(60) * 3 + classes)
    assert own_rule.min() > 0.5 and other_rules.max() < 0.5


def test_early_stopping_uses_a_validation_slice(products, title_only_config, training):
    frame, targets, _ = products

    classifier = ProductClassifier(config=title_only_config, architecture="logreg",
                                   **{**training, "validation_fraction": 0.2, "patience": 1, "epochs": 4})
    classifier.fit(frame, targets)

    assert "val_loss" in classifier.history_ and len(classifier.history_["val_loss"]) <= 4
    assert set(classifier.predict_proba(frame)) == {"exclusive"}

