"""Temperature scaling, reliability bins and the expected calibration error, on constructed probabilities."""
import numpy as np
import pytest

from classifier.core.calibration import expected_calibration_error, reliability_bins, temperature_apply, temperature_fit


def _overconfident(n: int = 4000, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A model right 60 % of the time that always says 0.95: badly over-confident."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    right = rng.random(n) < 0.6
    top = np.where(right, y, (y + 1 + rng.integers(0, k - 1, n)) % k)
    proba = np.full((n, k), 0.0)
    confidence = np.full(n, 0.95)
    proba[:] = ((1 - confidence) / (k - 1))[:, None]
    proba[np.arange(n), top] = confidence
    return proba, y


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model_and_keeps_the_top_class():
    proba, y = _overconfident()

    temperature = temperature_fit(proba, y)
    calibrated = temperature_apply(proba, temperature)

    assert temperature > 1.5  # over-confident: the probabilities must be softened
    before, after = expected_calibration_error(proba, y), expected_calibration_error(calibrated, y)
    assert before > 0.3 and after < 0.1
    np.testing.assert_array_equal(calibrated.argmax(axis=1), proba.argmax(axis=1))
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, rtol=1e-5)


def test_a_calibrated_model_keeps_a_temperature_near_one():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5000, 4)) * 2
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in proba])  # drawn from the model's own probabilities

    assert temperature_fit(proba, y) == pytest.approx(1.0, abs=0.1)


def test_reliability_bins_count_confidence_and_accuracy_by_hand():
    proba = np.array([[0.95, 0.05], [0.92, 0.08], [0.55, 0.45], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])

    table = reliability_bins(proba, y, bins=2)

    assert [(row.low, row.high, row.count) for row in table] == [(0.0, 0.5, 0), (0.5, 1.0, 4)]
    assert table[1].confidence == pytest.approx((0.95 + 0.92 + 0.55 + 0.7) / 4)
    assert table[1].accuracy == pytest.approx(0.75)
    assert expected_calibration_error(proba, y, bins=2) == pytest.approx(abs(0.75 - 0.78))


def test_no_products_means_no_calibration():
    assert temperature_fit(np.zeros((0, 3)), np.zeros(0)) == 1.0
    assert expected_calibration_error(np.zeros((0, 3)), np.zeros(0)) is None
