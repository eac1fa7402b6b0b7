"""Weak exclusive targets: combine what a legacy system says about a product with what a model reads in it.

A weak source (the legacy rules) names categories for a product; how far to trust that is measured on human
labels (the evidence row: P(class | what the source said), e.g. the source's precision on the categories it names
and the rest spread over the other classes). A model trained on the human labels alone reads the product's own
fields: P(class | product). With the source's mistakes independent of the fields given the class, Bayes' rule
combines the two, P(class | product, evidence) ∝ P(class | evidence) · P(class | product) / P(class), so a
source that is systematically wrong somewhere (a rule claiming every "T-shirt" for Shirts) is overruled where the
human labels say otherwise, and trusted where the model knows nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def evidence_posterior(evidence: np.ndarray, proba: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Return P(class | product, evidence) ∝ evidence · proba / prior, float32 [n, C], rows summing to 1.

    evidence float [n, C]: P(class | the weak evidence) of each product; proba float [n, C]: a model's P(class |
    product) over the same classes; prior float [C]: that model's class prior (e.g. its mean prediction over the
    catalogue). For a class the model does not know, pass proba = prior in its column (the product says nothing
    about it). A row the model rules out everywhere the evidence has mass keeps the evidence.
    """
    evidence = np.asarray(evidence, dtype=np.float64)
    proba = np.asarray(proba, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    if evidence.shape != proba.shape or prior.shape != evidence.shape[1:]:
        raise ValueError(f"evidence {evidence.shape}, proba {proba.shape} and prior {prior.shape} do not agree")
    posterior = evidence * proba / np.maximum(prior, np.finfo(np.float64).tiny)
    total = posterior.sum(axis=1, keepdims=True)
    evidence_total = evidence.sum(axis=1, keepdims=True)
    posterior = np.where(total > 0, posterior / np.where(total > 0, total, 1.0),
                         evidence / np.where(evidence_total > 0, evidence_total, 1.0))
    return posterior.astype(np.float32)


def evidence_rows(named: Sequence[Mapping[int, float]], n_classes: int, *,
                  observed: Sequence[Mapping[int, int] | None] | None = None, shrink: float) -> np.ndarray:
    """Return P(class | what the source named) float32 [n, n_classes], rows summing to 1.

    named[i]: class index → the measured precision of the source on that class, for the (one or more) classes it
    names for product i (non-empty). Without labels: the best precision ρ is the chance that one of the named
    classes is right, shared among them in proportion to their precisions; the other 1 − ρ is spread evenly over
    the other classes. observed[i] (optional): class index → how many human-labelled products for which the source
    named the same classes turned out to be that class; the row is then those counts shrunk towards the row above
    as if it had contributed `shrink` labels (labelapp's SHRINK_LABELS), the rest again spread evenly.
    """
    rows = np.zeros((len(named), n_classes), np.float64)
    for row, (precisions, counts) in enumerate(zip(named, observed if observed is not None else [None] * len(named))):
        if not precisions:
            raise ValueError(f"product {row}: the source names no class")
        best, total = max(precisions.values()), sum(precisions.values())
        base = {c: best * p / total for c, p in precisions.items()}
        others = (1.0 - best) / max(1, n_classes - len(base))
        if counts and sum(counts.values()):
            n = sum(counts.values())
            base = {c: (counts.get(c, 0) + shrink * base.get(c, others)) / (n + shrink)
                    for c in set(base) | set(counts)}
            others = max(0.0, 1.0 - sum(base.values())) / max(1, n_classes - len(base))
        rows[row] = others
        rows[row, list(base)] = list(base.values())
    return (rows / rows.sum(axis=1, keepdims=True)).astype(np.float32)
