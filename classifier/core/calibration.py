"""Calibration of the exclusive head: temperature scaling, expected calibration error, reliability bins.

A softmax's top probability is usually over-confident on products unlike the training set, and users read it
as "how likely is this right". Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural
Networks") divides the logits by one scalar T fitted on held-out products; it never changes the top-1 class.
With probabilities p in hand, log p are the logits up to a per-row constant, so p_T ∝ p^(1/T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEMPERATURE_BOUNDS = (0.2, 10.0)  # beyond these a fit is chasing a handful of products, not calibrating
RELIABILITY_BINS = 10
_FLOOR = 1e-12


def temperature_apply(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Return the rows of `proba` [n, k] re-scaled by temperature T: softmax(log p / T), float32 [n, k]."""
    proba = np.asarray(proba, dtype=np.float64)
    if temperature == 1.0 or proba.size == 0:
        return proba.astype(np.float32)
    logits = np.log(np.clip(proba, _FLOOR, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)


def _nll(proba: np.ndarray, y: np.ndarray, temperature: float, weights: np.ndarray) -> float:
    scaled = temperature_apply(proba, temperature).astype(np.float64)
    return float(-(weights * np.log(np.clip(scaled[np.arange(len(y)), y], _FLOOR, 1.0))).sum() / weights.sum())


def temperature_fit(proba: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None = None) -> float:
    """Return the temperature T minimising the (weighted) negative log-likelihood of the true classes.

    proba float [n, k], y int [n] class indices, weights float [n] (default 1). Golden-section search on log T
    over TEMPERATURE_BOUNDS: the NLL is unimodal in T. Returns 1.0 (no change) without products.
    """
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 1.0
    weights = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = _nll(proba, y, np.exp(a), weights), _nll(proba, y, np.exp(b), weights)
    for _ in range(60):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = _nll(proba, y, np.exp(a), weights)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = _nll(proba, y, np.exp(b), weights)
    return float(np.exp((low + high) / 2.0))


@dataclass(frozen=True)
class ReliabilityBin:
    """Products whose top-1 confidence fell in [low, high): how many, how confident, how often right."""

    low: float
    high: float
    count: int
    confidence: float | None
    accuracy: float | None


def reliability_bins(proba: np.ndarray, y: np.ndarray, *, bins: int = RELIABILITY_BINS) -> list[ReliabilityBin]:
    """Return equal-width confidence bins over [0, 1] with mean confidence and accuracy (None when empty)."""
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    confidence = proba.max(axis=1) if len(y) else np.zeros(0)
    correct = (proba.argmax(axis=1) == y) if len(y) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=False), 0, bins - 1)
    out = []
    for index in range(bins):
        members = which == index
        count = int(members.sum())
        out.append(ReliabilityBin(low=float(edges[index]), high=float(edges[index + 1]), count=count,
                                  confidence=float(confidence[members].mean()) if count else None,
                                  accuracy=float(correct[members].mean()) if count else None))
    return out


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, *, bins: int = RELIABILITY_BINS) -> float | None:
    """Return the ECE: the count-weighted mean |accuracy − confidence| over reliability bins (None: no products)."""
    table = reliability_bins(proba, y, bins=bins)
    total = sum(row.count for row in table)
    if not total:
        return None
    return float(sum(row.count * abs(row.accuracy - row.confidence) for row in table if row.count) / total)
