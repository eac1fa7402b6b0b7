"""Benchmark the classifier core's architectures on Myntra, against scikit-learn TF-IDF + LogisticRegression.

Run:  .venv/bin/python bench/bench_classifier.py [--architectures wide_deep logreg ...] [--epochs 6]
                                                   [--pool 100000] [--no-images] [--skip-peer]

Data: /work/shared/datasets/myntra-fashion/styles_clean.csv, read directly (no Django). The fixed split is
dev/test 90/10 from sha1("myntra\\x1f" + id); `dev` is split again 90/10 into a fit set and a tuning set
(the rule head's per-class thresholds), with the same hash's next digit, so every run sees the same sets.

Targets: articleType is the exclusive target. The rule objective uses keyword rules bootstrapped from the
articleType names (a title containing every word of a name, in singular or plural form, gets that articleType);
products that no rule matches carry no rule target (masked). Inputs: the title and the gender, plus the photo
embedding where `bench/out/myntra_embeddings.npy` (+ `myntra_embeddings_ids.npy`) or a colleague's
`bench/out/myntra_base_*.npz` cache (ids, vectors) has one, else no image.

For each architecture: test accuracy and macro-F1 (exclusive), micro-F1 (rule, on the test products a rule
matched, thresholds tuned on the tuning set), fit time and prediction throughput; the peer runs on the same
sets with the same inputs but the photo (TF-IDF word 1-2 grams + char 2-5 grams + one-hot gender). Last, the
best architecture is timed on "retrain + predict a 100k-product pool" (the catalogue repeated with noise).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifier.core.config import FeatureConfig, FieldSpec, config_load  # noqa: E402
from classifier.core.frames import ProductFrame, Targets  # noqa: E402
from classifier.core.metrics import exclusive_metrics, rule_metrics, thresholds_tune  # noqa: E402

MYNTRA = Path("/work/shared/datasets/myntra-fashion/styles_clean.csv")
OUT = ROOT / "bench" / "out"
SOURCE = "myntra"
IMAGE_DIM = 1280
ARCHITECTURES = ("logreg", "dnn", "wide_deep", "cnn", "rnn", "image", "multimodal")
# A linear model alone needs a larger step to converge in the same few epochs.
LEARNING_RATES = {"logreg": 1e-2}
STOPWORDS = {"and", "of", "the", "for", "with", "&"}
WORD = re.compile(r"[a-z0-9]+")


def split_digit(external_id: str, *, source: str = SOURCE, digit: int = 0) -> int:
    """Return a decimal digit of the product's fixed hash: digit 0 == 0 → test set, digit 1 == 0 → tuning set."""
    value = int.from_bytes(hashlib.sha1(f"{source}\x1f{external_id}".encode()).digest()[:8], "big")
    return value // 10 ** digit % 10


def myntra_read() -> list[dict]:
    with MYNTRA.open(encoding="utf-8", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["productDisplayName"] and row["articleType"]]


def image_embeddings() -> tuple[dict[str, int], np.ndarray] | None:
    """Return (id → row, float32 [m, 1280]) of the cached photo embeddings, or None when there is no cache."""
    npy, ids_npy = OUT / "myntra_embeddings.npy", OUT / "myntra_embeddings_ids.npy"
    if npy.exists() and ids_npy.exists():
        ids, vectors = np.load(ids_npy), np.load(npy)
    else:
        caches = sorted(OUT.glob("myntra_base_*.npz"))
        if not caches:
            return None
        with np.load(caches[-1]) as cache:
            ids, vectors = cache["ids"], cache["vectors"]
    return {str(i): row for row, i in enumerate(ids.tolist())}, vectors.astype(np.float32)


def keyword_forms(word: str) -> set[str]:
    """Return the singular / plural forms a rule accepts for one word of a category name."""
    forms = {word, word + "s", word + "es"}
    if word.endswith("ies"):
        forms.add(word[:-3] + "y")
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    return forms


class KeywordRules:
    """Bootstrap rules: a title containing every word of a category name (any form) gets that category."""

    def __init__(self, names: list[str]):
        self.names = names
        self.rules = [[keyword_forms(word) for word in WORD.findall(name.lower()) if word not in STOPWORDS]
                      for name in names]

    def match(self, titles: list[str]) -> np.ndarray:
        """Return the rules' multi-hot float32 [n, len(names)] for titles."""
        out = np.zeros((len(titles), len(self.names)), np.float32)
        for row, title in enumerate(titles):
            words = set(WORD.findall(title.lower()))
            for column, rule in enumerate(self.rules):
                if rule and all(forms & words for forms in rule):
                    out[row, column] = 1.0
        return out


def frame_of(rows: list[dict], embeddings) -> ProductFrame:
    image = image_present = None
    if embeddings is not None:
        index, vectors = embeddings
        image = np.zeros((len(rows), IMAGE_DIM), np.float32)
        image_present = np.zeros(len(rows), np.float32)
        for position, row in enumerate(rows):
            if row["id"] in index:
                image[position] = vectors[index[row["id"]]]
                image_present[position] = 1.0
    return ProductFrame(title=[row["productDisplayName"] for row in rows], gender=[row["gender"] for row in rows],
                        image=image, image_present=image_present)


def targets_of(rows: list[dict], classes: list[str], rules: KeywordRules) -> Targets:
    class_index = {name: position for position, name in enumerate(classes)}
    rule = rules.match([row["productDisplayName"] for row in rows])
    return Targets(exclusive=np.array([class_index[row["articleType"]] for row in rows]), classes=classes,
                   rule=rule, rule_known=rule.any(axis=1), rule_classes=classes)


def pool_rows(rows: list[dict], *, size: int, seed: int = 0) -> list[dict]:
    """Return `size` products: the catalogue repeated, titles with words dropped, swapped and re-cased."""
    rng = np.random.default_rng(seed)
    pool = []
    for position, source in enumerate(rng.integers(0, len(rows), size)):
        row = dict(rows[source], id=f"{rows[source]['id']}-pool{position}")
        words = row["productDisplayName"].split()
        words = [word for word in words if rng.random() > 0.1] or words
        if len(words) > 2 and rng.random() < 0.3:
            i = int(rng.integers(0, len(words) - 1))
            words[i], words[i + 1] = words[i + 1], words[i]
        title = " ".join(words)
        row["productDisplayName"] = title.upper() if rng.random() < 0.1 else title
        pool.append(row)
    return pool


def bench_config(*, images: bool) -> FeatureConfig:
    """Return the seed config restricted to the fields Myntra has, the title as word 1-2 gram and char 2-5 gram TF-IDF.

    Tuned on the fit / tuning sets against the peer: character n-grams (as the peer's) carry most of the gain
    over words alone; 128 hidden units beat 256 at two thirds of the time.
    """
    config = config_load().without_fields(["brand", "category", "category_path", "description", "size"])
    config = config.with_fields(["title"], max_tokens=20000, ngrams=(1, 2))
    title_chars = FieldSpec(name="title_chars", column="title", kind="text", representation="tfidf", analyzer="char",
                            ngrams=(2, 5), max_tokens=30000)
    config = dataclasses.replace(config, fields=(config.fields[0], title_chars, *config.fields[1:]))
    if not images:
        config = config.without_fields(["image"])
    return config.with_model(hidden_units=128, hidden_layers=1, dropout=0.3, encoder_units=128)


def architecture_config(config: FeatureConfig, architecture: str) -> FeatureConfig:
    """Return the config an architecture trains on: token sequences for the text CNN / RNN, the photo alone for image."""
    if architecture in ("cnn", "rnn"):
        return config.with_fields(["title"], representation="sequence", max_tokens=20000, ngrams=(1, 1),
                                  sequence_length=16, embedding_dim=64)
    if architecture == "image":
        return config.without_fields([spec.name for spec in config.fields if spec.kind != "dense"])
    return config


def throughput(predict, frame: ProductFrame) -> float:
    start = time.perf_counter()
    predict(frame)
    return len(frame) / (time.perf_counter() - start)


def run_architecture(architecture, config, fit, tune, test, args) -> dict:
    from classifier.core.estimator import ProductClassifier

    (X_fit, y_fit), (X_tune, y_tune), (X_test, y_test) = fit, tune, test
    classifier = ProductClassifier(config=architecture_config(config, architecture), architecture=architecture,
                                   objectives=("exclusive", "rule"), epochs=args.epochs, batch_size=args.batch_size,
                                   learning_rate=LEARNING_RATES.get(architecture, args.learning_rate),
                                   loss_weights={"exclusive": 1.0, "rule": 0.5}, validation_fraction=0.1,
                                   patience=args.patience, random_state=0)
    start = time.perf_counter()
    classifier.fit(X_fit, y_fit)
    fit_seconds = time.perf_counter() - start
    classifier.predict_proba(X_test.take(np.arange(16)))  # warm-up, as a serving worker would have
    start = time.perf_counter()
    proba = classifier.predict_proba(X_test)
    per_second = len(X_test) / (time.perf_counter() - start)
    tuned = thresholds_tune(y_tune.rule[y_tune.rule_known], classifier.predict_proba(X_tune)["rule"][y_tune.rule_known])
    exclusive = exclusive_metrics(y_test.exclusive, proba["exclusive"])
    rule = rule_metrics(y_test.rule[y_test.rule_known], proba["rule"][y_test.rule_known], thresholds=tuned)
    return {"name": architecture, "accuracy": exclusive["accuracy"], "macro_f1": exclusive["macro_f1"],
            "rule_micro_f1": rule["micro_f1"], "fit_s": fit_seconds, "epochs": len(classifier.history_["loss"]),
            "predict_per_s": per_second, "classifier": classifier}


def run_peer(fit_rows, test_rows, y_fit, y_test, args) -> dict:
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    gender = OneHotEncoder(handle_unknown="ignore")
    model = LogisticRegression(C=args.peer_c, max_iter=args.peer_max_iter)

    def features(rows, *, fit):
        titles = [row["productDisplayName"] for row in rows]
        genders = [[row["gender"]] for row in rows]
        parts = ((word.fit_transform(titles), char.fit_transform(titles), gender.fit_transform(genders)) if fit
                 else (word.transform(titles), char.transform(titles), gender.transform(genders)))
        return hstack(parts).tocsr()

    start = time.perf_counter()
    model.fit(features(fit_rows, fit=True), y_fit.exclusive)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    proba_known = model.predict_proba(features(test_rows, fit=False))
    per_second = len(test_rows) / (time.perf_counter() - start)
    proba = np.zeros((len(test_rows), len(y_fit.classes)))
    proba[:, model.classes_] = proba_known
    exclusive = exclusive_metrics(y_test.exclusive, proba)
    return {"name": f"peer: sklearn TF-IDF + LR (C={args.peer_c})", "accuracy": exclusive["accuracy"],
            "macro_f1": exclusive["macro_f1"], "rule_micro_f1": float("nan"), "fit_s": fit_seconds,
            "epochs": model.n_iter_.max(), "predict_per_s": per_second}


def table_print(results: list[dict]) -> None:
    header = f"{'model':<40} {'test acc':>8} {'macro-F1':>8} {'rule µF1':>8} {'fit s':>7} {'epochs':>6} {'pred/s':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        rule = "-" if r["rule_micro_f1"] != r["rule_micro_f1"] else f"{r['rule_micro_f1']:.4f}"
        print(f"{r['name']:<40} {r['accuracy']:>8.4f} {r['macro_f1']:>8.4f} {rule:>8} {r['fit_s']:>7.1f} "
              f"{r['epochs']:>6} {r['predict_per_s']:>9,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--patience", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--pool", type=int, default=100_000, help="size of the retrain + predict pool (0: skip)")
    parser.add_argument("--no-images", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--peer-c", type=float, default=10.0)
    parser.add_argument("--peer-max-iter", type=int, default=300)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N products (a smoke run)")
    args = parser.parse_args()

    rows = myntra_read()[:args.limit or None]
    classes = sorted({row["articleType"] for row in rows})
    rules = KeywordRules(classes)
    embeddings = None if args.no_images else image_embeddings()
    test_rows = [row for row in rows if split_digit(row["id"]) == 0]
    dev_rows = [row for row in rows if split_digit(row["id"]) != 0]
    tune_rows = [row for row in dev_rows if split_digit(row["id"], digit=1) == 0]
    fit_rows = [row for row in dev_rows if split_digit(row["id"], digit=1) != 0]
    sets = [(frame_of(part, embeddings), targets_of(part, classes, rules)) for part in (fit_rows, tune_rows, test_rows)]
    (_, y_fit), _, (X_test, y_test) = sets
    photos = 0 if embeddings is None else int(X_test.image_present.sum())
    print(f"Myntra: {len(rows):,} products, {len(classes)} articleTypes; fit {len(fit_rows):,} / tune "
          f"{len(tune_rows):,} / test {len(test_rows):,}; test products with a photo: {photos:,}; "
          f"rules match {y_fit.rule_known.mean():.1%} of fit products")
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}", flush=True)

    config = bench_config(images=embeddings is not None)
    results = []
    for architecture in args.architectures:
        if architecture == "image" and embeddings is None:
            print("image: skipped (no photo embeddings cached)")
            continue
        results.append(run_architecture(architecture, config, *sets, args))
        r = results[-1]
        print(f"  {architecture}: acc {r['accuracy']:.4f} macro-F1 {r['macro_f1']:.4f} rule µF1 "
              f"{r['rule_micro_f1']:.4f} fit {r['fit_s']:.1f}s ({r['epochs']} epochs) {r['predict_per_s']:,.0f}/s",
              flush=True)
    if not args.skip_peer:
        results.append(run_peer(fit_rows, test_rows, y_fit, y_test, args))
        r = results[-1]
        print(f"  peer: acc {r['accuracy']:.4f} macro-F1 {r['macro_f1']:.4f} fit {r['fit_s']:.1f}s", flush=True)
    print()
    table_print(results)

    ours = [r for r in results if "classifier" in r]
    if args.pool and ours:
        from classifier.core.estimator import ProductClassifier

        best = max(ours, key=lambda r: r["accuracy"])
        X_pool = frame_of(pool_rows(rows, size=args.pool), embeddings)
        X_fit, y_fit = sets[0]
        start = time.perf_counter()
        retrained = ProductClassifier(**best["classifier"].get_params()).fit(X_fit, y_fit)
        fitted = time.perf_counter()
        retrained.predict_proba(X_pool)
        done = time.perf_counter()
        print(f"\nretrain + predict a {args.pool:,}-product pool with {best['name']}: {done - start:.1f}s "
              f"(fit {fitted - start:.1f}s on {len(X_fit):,} products, predict {done - fitted:.1f}s = "
              f"{args.pool / (done - fitted):,.0f}/s); goal <= 120s on 2 cores; load average "
              f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
