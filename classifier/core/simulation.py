"""Simulated active learning: the labelling loop run against an oracle that already knows every label.

`simulate` starts from a random seed set, then each round fits a fresh classifier on the labelled products
(the production training code: anything with ProductClassifier's fit / predict_proba), measures it on a
fixed test set, scores the unlabelled pool with a sampling strategy (or a mix of strategies) and reveals the
oracle's labels of the chosen batch. `summarise`, `curves_to_csv` and `curves_plot_png` compare the curves of
several strategies over repeats. NumPy only; matplotlib is imported by `curves_plot_png` alone.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from classifier.core.frames import ProductFrame, Targets
from classifier.core.metrics import Ancestors, exclusive_metrics
from classifier.core.sampling import STRATEGIES, mix_counts, mixed_batch_select

CSV_COLUMNS = ("strategy", "seed", "round", "labels", "accuracy", "macro_f1", "seconds")


def simulate(*, X: ProductFrame, y: np.ndarray, classes: Sequence[str], X_test: ProductFrame, y_test: np.ndarray,  # long: the loop reads best whole
             strategy: str | Mapping[str, int | float], rounds: int, batch_size: int, seed_size: int,
             make_classifier: Callable[[int], Any], rule_targets: Targets | None = None,
             embeddings: np.ndarray | None = None, ancestors: Ancestors | None = None, diversity: float = 0.0,
             committee_size: int = 3, strategy_options: Mapping[str, Mapping] | None = None,
             name: str | None = None, random_state: int | None = None,
             progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Run the loop on pool X with oracle classes y int [n]; return one record per fit, seed set first.

    Each record: strategy, seed, round, labels (how many are labelled), accuracy and macro_f1 on
    (X_test, y_test int [m]), seconds (fit + evaluation + selection) and picked, the indices int64 [batch] of
    X labelled next (empty after the last fit). `rounds` batches of `batch_size` are labelled after the
    random seed set, so there are rounds + 1 records. `strategy` is a registered name or a mix such as
    {"random": 0.2, "margin": 0.8} (see `sampling.mixed_batch_select`).

    `make_classifier(n_labelled)` returns an unfitted classifier for a labelled set of that size (so the
    number of epochs can follow it). Without `rule_targets` each fit sees only the labelled products. With
    them (rule targets [n, R] known for the whole pool) the fit sees every pool product, exclusive target −1
    where unlabelled, as in production where the rule head trains on everything. QBC strategies train
    `committee_size` extra classifiers on bootstrap resamples of the labelled set. Density and `diversity`
    use `embeddings` [n, d], or, when None, the round's classifier's `embed(X)`.
    """
    y = np.asarray(y, dtype=np.int64)
    classes = tuple(str(c) for c in classes)
    label, counts, needs = _strategy_plan(strategy, batch_size=batch_size, ancestors=ancestors, name=name)
    if not 0 < seed_size <= len(X) or len(y) != len(X):
        raise ValueError(f"seed_size must be in (0, {len(X)}] and y must have one class per product of X")

    rng = np.random.default_rng(random_state)
    labelled = np.zeros(len(X), bool)
    labelled[rng.choice(len(X), seed_size, replace=False)] = True
    records = []
    for round_ in range(rounds + 1):
        start = time.perf_counter()
        n_labelled = int(labelled.sum())
        classifier = _fit(make_classifier(n_labelled), X, y, classes, labelled, rule_targets)
        metrics = exclusive_metrics(y_test, classifier.predict_proba(X_test)["exclusive"], top_k=())
        pool, picked = np.flatnonzero(~labelled), np.zeros(0, np.int64)
        if round_ < rounds and len(pool):
            X_pool = X.take(pool)
            inputs: dict[str, Any] = {"ancestors": ancestors, "proba": np.zeros((len(pool), 0), np.float32)}
            if "proba" in needs:
                inputs["proba"] = classifier.predict_proba(X_pool)["exclusive"]
            if "members" in needs:
                members = [_member(make_classifier(n_labelled), seed=int(rng.integers(2**31)))
                           for _ in range(committee_size)]
                inputs["members"] = np.stack([_fit(member, X, y, classes, labelled, rule_targets, bootstrap=rng)
                                              .predict_proba(X_pool)["exclusive"] for member in members])
            if "embeddings" in needs or diversity > 0:
                inputs["embeddings"] = classifier.embed(X_pool) if embeddings is None else embeddings[pool]
            chosen, _ = mixed_batch_select(mix=counts, **inputs, diversity=diversity, random_state=rng,
                                           options=strategy_options)
            picked = pool[chosen]
            labelled[picked] = True
        record = {"strategy": label, "seed": random_state, "round": round_, "labels": n_labelled,
                  "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                  "seconds": time.perf_counter() - start, "picked": picked}
        records.append(record)
        if progress is not None:
            progress(record)
    return records


def _strategy_plan(strategy: str | Mapping[str, int | float], *, batch_size: int, ancestors: Ancestors | None,
                   name: str | None) -> tuple[str, dict[str, int], set[str]]:
    """Return (record label, batch count per strategy, the inputs the strategies need); raise on a bad mix."""
    mix = {strategy: batch_size} if isinstance(strategy, str) else dict(strategy)
    counts = mix_counts(mix, batch_size=batch_size)
    unknown = set(counts) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown sampling strategies {sorted(unknown)}; choose among {sorted(STRATEGIES)}")
    # Random scores read only the pool's size: a pool of random picks is never predicted.
    needs = {need for part, count in counts.items() if count and not STRATEGIES[part].random
             for need in STRATEGIES[part].needs}
    if "ancestors" in needs and ancestors is None:
        raise ValueError("a tree strategy needs ancestors")
    label = name or (strategy if isinstance(strategy, str) else "+".join(f"{k}:{v}" for k, v in mix.items()))
    return label, counts, needs


def labels_to_reach(curve: Iterable[tuple[int, float]], target_accuracy: float) -> int | None:
    """Return the fewest labels at which the (labels, accuracy) curve reaches target_accuracy, or None."""
    for labels, accuracy in sorted(curve):
        if accuracy >= target_accuracy:
            return int(labels)
    return None


def summarise(results: Iterable[Mapping], *, baseline: str = "random") -> dict[str, dict]:
    """Return per strategy the mean / std accuracy per label count and the labels it needs to reach the baseline.

    Per strategy: labels int [k], mean_accuracy / std_accuracy / mean_macro_f1 float [k] across repeats,
    final_accuracy, repeats, and — when the baseline strategy ran — labels_to_baseline (the fewest labels whose
    mean accuracy reaches the baseline's final mean accuracy, None if never) and saving (the baseline's final
    label count / labels_to_baseline).
    """
    by_strategy: dict[str, dict[int, list[Mapping]]] = {}
    for record in results:
        by_strategy.setdefault(record["strategy"], {}).setdefault(int(record["labels"]), []).append(record)
    summary = {}
    for strategy, points in by_strategy.items():
        labels = np.array(sorted(points))
        accuracy = [np.array([r["accuracy"] for r in points[n]], dtype=float) for n in labels]
        summary[strategy] = {
            "labels": labels, "mean_accuracy": np.array([a.mean() for a in accuracy]),
            "std_accuracy": np.array([a.std() for a in accuracy]),
            "mean_macro_f1": np.array([np.mean([r["macro_f1"] for r in points[n]]) for n in labels]),
            "repeats": max(len(a) for a in accuracy)}
        summary[strategy]["final_accuracy"] = float(summary[strategy]["mean_accuracy"][-1])
    if baseline in summary:
        target, budget = summary[baseline]["final_accuracy"], int(summary[baseline]["labels"][-1])
        for entry in summary.values():
            needed = labels_to_reach(zip(entry["labels"].tolist(), entry["mean_accuracy"].tolist()), target)
            entry["labels_to_baseline"] = needed
            entry["saving"] = budget / needed if needed else None
    return summary


def curves_to_csv(path: str | Path, results: Iterable[Mapping]) -> None:
    """Write one row per simulation record (strategy, seed, round, labels, accuracy, macro_f1, seconds)."""
    with Path(path).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)


def curves_plot_png(path: str | Path, results: Iterable[Mapping], title: str) -> None:
    """Draw test accuracy against labels, mean ± std across repeats per strategy, to a PNG file."""
    # The object API with the Agg canvas: no pyplot, so no global backend and no display is ever touched.
    # lazy: matplotlib takes ~0.4 s to import and only this PNG needs it; the simulation itself is NumPy only.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for strategy, entry in summarise(results).items():
        line, = axes.plot(entry["labels"], entry["mean_accuracy"], marker=".", label=strategy)
        axes.fill_between(entry["labels"], entry["mean_accuracy"] - entry["std_accuracy"],
                          entry["mean_accuracy"] + entry["std_accuracy"], color=line.get_color(), alpha=0.15)
    axes.set(title=title, xlabel="labelled products", ylabel="test accuracy")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="png")


def _fit(classifier, X: ProductFrame, y: np.ndarray, classes: tuple[str, ...], labelled: np.ndarray,
         rule_targets: Targets | None, *, bootstrap: np.random.Generator | None = None):
    """Fit classifier on the labelled products (and, with rule targets, on the whole pool); return it.

    Targets always carry the full class list, so the softmax has every class even before one is labelled.
    """
    known = np.flatnonzero(labelled)
    if bootstrap is not None:
        known = bootstrap.choice(known, len(known), replace=True)
    if rule_targets is None:
        return classifier.fit(X.take(known), Targets(exclusive=y[known], classes=classes))
    if bootstrap is None:
        return classifier.fit(X, dataclasses.replace(rule_targets, exclusive=np.where(labelled, y, -1),
                                                     classes=classes))
    # A bootstrap member repeats some labelled products: the pool's unlabelled rows follow them unlabelled.
    rows = np.concatenate([known, np.flatnonzero(~labelled)])
    exclusive = np.concatenate([y[known], np.full(len(rows) - len(known), -1)])
    return classifier.fit(X.take(rows), dataclasses.replace(rule_targets.take(rows), exclusive=exclusive,
                                                            classes=classes))


def _member(classifier, *, seed: int):
    """Return the committee member with its own random_state, when it takes one (a scikit-learn-style estimator)."""
    if hasattr(classifier, "get_params") and "random_state" in classifier.get_params():
        classifier.set_params(random_state=seed)
    return classifier
