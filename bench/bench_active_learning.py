"""Simulate active learning on Myntra articleType: how many labels each sampling strategy needs.

Run:  .venv/bin/python bench/bench_active_learning.py [--strategies random margin ...] [--seeds 3]
          [--max-labels 2000] [--batch-size 100] [--seed-size 100] [--architecture dnn] [--epochs 12]
          [--limit N] [--name active_learning] [--from-csv bench/out/a.csv bench/out/b.csv]

Data: /work/shared/datasets/myntra-fashion/styles_clean.csv through bench_classifier's helpers. The pool is
the dev split (split_digit(id) != 0), the test set split_digit == 0; the oracle reveals a product's articleType
when a strategy picks it. Each seed draws its own random seed set (the same one for every strategy), then
labels a batch per round up to --max-labels, refitting a fresh classifier each round (classifier.core's
ProductClassifier, the production training code, on title + gender; no warm start).

Model for simulation: dnn on binary bags of title word 1-2 grams and character 2-5 grams (+ gender one-hot).
The TF-IDF representation of bench_classifier is not used because its out-of-vocabulary column carries most
of a new product's TF-IDF norm when the vocabulary comes from a few hundred titles (0.44 vs 0.56 accuracy at
100 labels); bags of n-grams give the unseen column no more weight than one known n-gram.

Peer: scikit-learn TF-IDF (word 1-2 + char_wb 2-5 grams, as bench_classifier's peer) + LogisticRegression in
the same loop, with random and margin sampling. Prints labels → mean test accuracy per strategy, the labels
each needs to reach random's final accuracy and the saving; writes <name>.csv and <name>.png to bench/out/.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_classifier  # noqa: E402

from classifier.core.config import FeatureConfig  # noqa: E402
from classifier.core.frames import ProductFrame, Targets  # noqa: E402
from classifier.core.simulation import curves_plot_png, curves_to_csv, simulate, summarise  # noqa: E402

OUT = ROOT / "bench" / "out"
# name → simulate() arguments; "peer" runs the scikit-learn peer instead of ProductClassifier.
EXPERIMENTS = {
    "random": dict(strategy="random"),
    "entropy": dict(strategy="entropy"),
    "margin": dict(strategy="margin"),
    "least_confidence": dict(strategy="least_confidence"),
    "qbc_kl": dict(strategy="qbc_kl"),
    "qbc_vote": dict(strategy="qbc_vote"),
    "density": dict(strategy="density"),
    "margin_diverse": dict(strategy="margin", diversity=0.5),
    "margin_diverse_strong": dict(strategy="margin", diversity=1.0),
    "margin_random10": dict(strategy={"random": 0.1, "margin": 0.9}),
    "peer_random": dict(strategy="random", peer=True),
    "peer_margin": dict(strategy="margin", peer=True),
}
DEFAULT_STRATEGIES = ("random", "entropy", "margin", "least_confidence", "qbc_kl", "density", "margin_diverse",
                      "margin_diverse_strong", "margin_random10", "peer_random", "peer_margin")


def simulation_config() -> FeatureConfig:
    """Return bench_config's title word + char n-grams as capped binary bags, for labelled sets of 100 to 2,000."""
    config = bench_classifier.bench_config(images=False)
    config = config.with_fields(["title"], max_tokens=3000).with_fields(["title_chars"], max_tokens=6000)
    return config.with_fields(["title", "title_chars"], representation="bow").with_model(dropout=0.5)


def classifier_factory(args):
    """Return make_classifier(n_labelled) training at least --min-steps steps, so a 100-product seed set trains too."""
    from classifier.core.estimator import ProductClassifier

    config = simulation_config()

    def make_classifier(n_labelled: int) -> ProductClassifier:
        epochs = max(args.epochs, math.ceil(args.min_steps / math.ceil(n_labelled / args.train_batch_size)))
        return ProductClassifier(config=config, architecture=args.architecture, epochs=epochs,
                                 batch_size=args.train_batch_size, learning_rate=args.learning_rate,
                                 validation_fraction=0.0, random_state=0)

    return make_classifier


class PeerClassifier:
    """scikit-learn TF-IDF + LogisticRegression behind ProductClassifier's fit / predict_proba on title + gender."""

    def __init__(self, *, c: float = 10.0, max_iter: int = 300):
        self.c = c
        self.max_iter = max_iter

    def fit(self, X: ProductFrame, y: Targets) -> "PeerClassifier":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import OneHotEncoder

        self.word_ = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        self.char_ = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
        self.gender_ = OneHotEncoder(handle_unknown="ignore")
        self.model_ = LogisticRegression(C=self.c, max_iter=self.max_iter)
        self.model_.fit(self._features(X, fit=True), y.exclusive)
        self.n_classes_ = len(y.classes)
        return self

    def predict_proba(self, X: ProductFrame) -> dict[str, np.ndarray]:
        proba = np.zeros((len(X), self.n_classes_), np.float32)
        proba[:, self.model_.classes_] = self.model_.predict_proba(self._features(X, fit=False))
        return {"exclusive": proba}

    def _features(self, X: ProductFrame, *, fit: bool):
        from scipy.sparse import hstack

        titles, genders = list(X.title), [[gender] for gender in X.gender]
        if fit:
            parts = (self.word_.fit_transform(titles), self.char_.fit_transform(titles),
                     self.gender_.fit_transform(genders))
        else:
            parts = (self.word_.transform(titles), self.char_.transform(titles), self.gender_.transform(genders))
        return hstack(parts).tocsr()


def curve_table_print(summary: dict[str, dict], names: list[str]) -> None:
    labels = sorted({int(n) for name in names for n in summary[name]["labels"]})
    width = max(9, *(len(name) for name in names))
    print(f"{'labels':>7} " + " ".join(f"{name:>{width}}" for name in names))
    for count in labels:
        cells = []
        for name in names:
            where = np.flatnonzero(summary[name]["labels"] == count)
            cells.append(f"{summary[name]['mean_accuracy'][where[0]]:>{width}.4f}" if len(where) else " " * width)
        print(f"{count:>7} " + " ".join(cells))


def reach_table_print(summary: dict[str, dict], names: list[str], baseline: str, seconds: dict[str, float]) -> None:
    target = summary[baseline]["final_accuracy"]
    print(f"\nlabels to reach {baseline}'s final mean accuracy {target:.4f} "
          f"(at {int(summary[baseline]['labels'][-1])} labels):")
    for name in names:
        entry = summary[name]
        needed, saving = entry.get("labels_to_baseline"), entry.get("saving")
        print(f"  {name:<18} final {entry['final_accuracy']:.4f}  repeats {entry['repeats']}  "
              f"needs {needed if needed else '>' + str(int(entry['labels'][-1])):>6}  "
              f"saving {f'{saving:.2f}x' if saving else '-':>6}  {seconds.get(name, float('nan')):6.1f} s/round")


def report(results: list[dict], *, name: str, title: str) -> None:
    """Print the curves, labels-to-reach and goal checks of all results; write <name>.csv and <name>.png."""
    OUT.mkdir(parents=True, exist_ok=True)
    curves_to_csv(OUT / f"{name}.csv", results)
    curves_plot_png(OUT / f"{name}.png", results, title=title)
    strategies = list(dict.fromkeys(r["strategy"] for r in results))
    ours = [s for s in strategies if not s.startswith("peer_")]
    peers = [s for s in strategies if s.startswith("peer_")]
    seconds = {s: float(np.mean([r["seconds"] for r in results if r["strategy"] == s])) for s in strategies}
    print("\nmean test accuracy by labelled products:")
    curve_table_print(summarise(results), strategies)
    best = None
    if "random" in ours:
        summary = summarise([r for r in results if r["strategy"] in ours], baseline="random")
        reach_table_print(summary, ours, "random", seconds)
        reached = [s for s in ours if s != "random" and summary[s].get("labels_to_baseline")]
        if reached:
            best = min(reached, key=lambda s: (summary[s]["labels_to_baseline"], -summary[s]["final_accuracy"]))
            print(f"goal 1 (best strategy reaches random's {int(summary['random']['labels'][-1])}-label accuracy "
                  f"with <= 800 labels): {best} needs {summary[best]['labels_to_baseline']} -> "
                  f"{'met' if summary[best]['labels_to_baseline'] <= 800 else 'NOT met'}")
    if "peer_random" in peers:
        summary = summarise([r for r in results if r["strategy"] in peers], baseline="peer_random")
        reach_table_print(summary, peers, "peer_random", seconds)
    if best and peers:
        every = summarise(results)
        peer_best = {int(n): max(float(every[p]["mean_accuracy"][i]) for p in peers
                                 for i in np.flatnonzero(every[p]["labels"] == n))
                     for n in every[peers[0]]["labels"]}
        ahead = [(int(n), float(accuracy) - peer_best[int(n)])
                 for n, accuracy in zip(every[best]["labels"], every[best]["mean_accuracy"]) if int(n) in peer_best]
        behind = [f"{n} ({gap:+.4f})" for n, gap in ahead if gap <= 0]
        print(f"goal 2 ({best} beats the better peer curve at every label count): "
              f"{'met' if not behind else 'NOT met at ' + ', '.join(behind)}; "
              f"smallest lead {min(gap for _, gap in ahead):+.4f}")
    print(f"\nwrote {OUT / (name + '.csv')} and {OUT / (name + '.png')}")


def records_read(paths: list[str]) -> list[dict]:
    results = []
    for path in paths:
        with open(path, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                results.append({**row, "labels": int(row["labels"]), "accuracy": float(row["accuracy"]),
                                "macro_f1": float(row["macro_f1"]), "seconds": float(row["seconds"])})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES), choices=list(EXPERIMENTS))
    parser.add_argument("--seeds", type=int, default=3, help="repeats, seeded 0, 1, ...")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-labels", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=100, help="products labelled per round")
    parser.add_argument("--seed-size", type=int, default=100)
    parser.add_argument("--architecture", default="dnn")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--min-steps", type=int, default=60)
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--committee-size", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N products (a smoke run)")
    parser.add_argument("--name", default="active_learning", help="output file stem under bench/out/")
    parser.add_argument("--from-csv", nargs="+", help="only report on earlier runs' CSVs (merged)")
    args = parser.parse_args()

    title = f"Myntra articleType: active learning, batches of {args.batch_size}"
    if args.from_csv:
        report(records_read(args.from_csv), name=args.name, title=title)
        return

    rows = bench_classifier.myntra_read()[:args.limit or None]
    classes = sorted({row["articleType"] for row in rows})
    class_index = {name: position for position, name in enumerate(classes)}
    pool_rows = [row for row in rows if bench_classifier.split_digit(row["id"]) != 0]
    test_rows = [row for row in rows if bench_classifier.split_digit(row["id"]) == 0]
    X, X_test = bench_classifier.frame_of(pool_rows, None), bench_classifier.frame_of(test_rows, None)
    y = np.array([class_index[row["articleType"]] for row in pool_rows])
    y_test = np.array([class_index[row["articleType"]] for row in test_rows])
    rounds = (args.max_labels - args.seed_size) // args.batch_size
    print(f"Myntra: pool {len(X):,}, test {len(X_test):,}, {len(classes)} articleTypes; seed set {args.seed_size}, "
          f"{rounds} rounds of {args.batch_size} -> {args.seed_size + rounds * args.batch_size} labels; "
          f"{args.seeds} seeds; {args.architecture}, >= {args.epochs} epochs; cores {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)

    make_classifier = classifier_factory(args)
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    start = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in args.strategies:
            experiment = dict(EXPERIMENTS[name])
            factory = (lambda n_labelled: PeerClassifier()) if experiment.pop("peer", False) else make_classifier
            run_start = time.perf_counter()
            results.extend(simulate(
                X=X, y=y, classes=classes, X_test=X_test, y_test=y_test, rounds=rounds, batch_size=args.batch_size,
                seed_size=args.seed_size, make_classifier=factory, committee_size=args.committee_size, name=name,
                random_state=seed, **experiment,
                progress=lambda r: print(f"  seed {seed} {name:<17} {r['labels']:>5} labels  acc {r['accuracy']:.4f}"
                                         f"  macro-F1 {r['macro_f1']:.4f}  {r['seconds']:5.1f}s", flush=True)))
            print(f"seed {seed} {name}: {time.perf_counter() - run_start:.0f}s, "
                  f"total {(time.perf_counter() - start) / 60:.1f} min", flush=True)
            curves_to_csv(OUT / f"{args.name}.csv", results)  # a killed run keeps what it finished
    report(results, name=args.name, title=title)
    print(f"wall time {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
