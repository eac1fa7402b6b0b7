"""Trustworthy categories on the full Myntra catalogue: does the product beat the rules it replaces, from 0 labels on?

Run:  DJANGO_DEBUG=1 .venv/bin/python bench/bench_trust.py [--seeds 3] [--architecture wide_deep] [--epochs E]
          [--labels 100] [--labels-only 500] [--limit N]

In a throwaway database (created and migrated here, dropped at the end), with the production pipeline:

1. The catalogue as `make full-myntra` builds it (bench_training_pipeline.py's helpers: Myntra's masterCategory >
   subCategory > articleType tree, the raw styles.csv), articleType as the exclusive target. The test split's
   articleType is imported as its ground truth; then the feed category is hidden from every product (the
   catalogue, the model and the weak targets never see it: the answer is not an input). Legacy rules come from
   `bootstrap_rules` (one keyword rule per articleType name) and `apply_rules`.
2. "Rules alone": the catalogue's accuracy on the test split's labels before any model, and the rules' accuracy
   on the test products they cover.
3. Per seed, from a clean slate (no dev labels, no active model):
   a. 0 human labels: a model trained from weak targets alone (the rules' categories, weighted by their measured
      precision); its test accuracy, the catalogue's accuracy before → after its promotion, and how often the
      labelling card's merged suggestions (the model's top-5 + the rules' categories) hold the right answer.
   b. --labels random dev labels (a round's random share), weak targets too: the model's accuracy and the
      catalogue's after promotion, against rules alone.
   c. --labels-only random dev labels, human labels only (weak_targets off): the labels-only baseline.
   Every promotion's catalogue accuracy before → after is printed: the guard must never let it drop.
The feature config is text only (title word 1–2-grams and character 2–5-grams, gender): the photos' embeddings
would cost minutes to compute for a quarter of the products and do not change what is measured here.
Prints per seed and mean ± spread (half the max-min range) over seeds.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import bench_training_pipeline as pipeline_bench  # noqa: E402

BENCH_DATABASE = "bench_labelapp_trust"
SOURCE = "myntra"
FEATURES = """
[fields.title]
kind = "text"
representation = "tfidf"
max_tokens = 8000
ngrams = [1, 2]

[fields.title_chars]
kind = "text"
column = "title"
representation = "tfidf"
analyzer = "char"
ngrams = [2, 5]
max_tokens = 12000

[fields.gender]
kind = "categorical"
representation = "onehot"

[model]
hidden_units = 128
hidden_layers = 1
activation = "relu"
dropout = 0.3
encoder_units = 128
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--architecture", help="default: CLASSIFIER_DEFAULT_ARCHITECTURE")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--labels-only", type=int, default=500)
    parser.add_argument("--limit", type=int, default=0, help="import only the first N rows of styles.csv (smoke run)")
    args = parser.parse_args()
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    started = time.perf_counter()
    print(f"load average at start: {pipeline_bench.load_average()}  ({os.cpu_count()} CPUs)", flush=True)
    settings.ARTEFACT_ROOT = pipeline_bench.OUT / "artefacts_trust"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = BENCH_DATABASE
    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        run(args)
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)
        import shutil

        shutil.rmtree(settings.ARTEFACT_ROOT, ignore_errors=True)
    print(f"\nwhole bench {time.perf_counter() - started:.0f} s; load average {pipeline_bench.load_average()}")


def catalogue_build(limit: int) -> dict[int, int]:
    """Import the catalogue and the test ground truth, hide the feed, apply bootstrap rules; return dev truth."""
    from labelapp.catalogue.models import Product, RuleLabel, Split
    from labelapp.catalogue.services.ground_truth import labels_import_from_feed
    from labelapp.catalogue.services.product_categories import products_category_refresh

    command, timed = pipeline_bench.command, pipeline_bench.timed
    with tempfile.TemporaryDirectory() as directory:
        timed("import_taxonomy", command, "import_taxonomy", str(pipeline_bench.taxonomy_csv(Path(directory))))
        timed("import_products styles.csv", command, "import_products",
              str(pipeline_bench.styles_csv(Path(directory), limit)), source=SOURCE,
              mapping=str(ROOT / "demo" / "mappings" / "myntra.toml"))
    truth = timed("test split labelled from the feed (ground truth)", labels_import_from_feed, source=SOURCE,
                  split=Split.TEST)
    dev_truth = dict(Product.objects.filter(split=Split.DEV, feed_category__is_exclusive=True)
                     .values_list("id", "feed_category_id"))
    # The feed is hidden: nothing downstream may read the answer.
    Product.objects.update(feed_category=None, category_path="")
    products_category_refresh()
    timed("bootstrap_rules", command, "bootstrap_rules")
    timed("apply_rules", command, "apply_rules")
    print(f"  {Product.objects.count():,} products, {truth.labelled:,} test ground-truth labels, {len(dev_truth):,} "
          f"dev products with a known articleType; rules fire on "
          f"{RuleLabel.objects.values('product').distinct().count():,} products", flush=True)
    pipeline_bench.database_analyze()
    return dev_truth


def rules_alone() -> dict:
    """Catalogue accuracy with the rules only, and the rules' accuracy on the test products they cover."""
    from labelapp.catalogue.services.product_categories import catalogue_accuracy_measure

    measure = catalogue_accuracy_measure()
    covered, right = measure.by_source.get("rule", (0, 0))
    return {"catalogue": measure.accuracy, "covered": covered / max(measure.labelled, 1),
            "rules_on_covered": right / covered if covered else None, "n": measure.labelled}


def slate_clean() -> None:
    """Forget every dev label and model version: the catalogue as it was with the rules alone."""
    from classifier.models import ModelVersion
    from labelapp.catalogue.models import Label, Split
    from labelapp.catalogue.services.product_categories import products_model_categories_replace
    from labelapp.catalogue.services.trust import trust_and_categories_refresh

    Label.objects.filter(product__split=Split.DEV).delete()
    ModelVersion.objects.filter(is_active=True).update(is_active=False)
    products_model_categories_replace(product_ids=[], category_ids=[], confidences=[])
    trust_and_categories_refresh()


def random_labels(dev_truth: dict[int, int], count: int, seed: int) -> int:
    """Label `count` random dev products with their true articleType, as a round's random share would."""
    from labelapp.catalogue.models import Label, LabelStrategy
    from labelapp.catalogue.services.product_categories import products_category_refresh

    picked = random.Random(seed).sample(sorted(dev_truth), min(count, len(dev_truth)))
    Label.objects.bulk_create([Label(product_id=pid, category_id=dev_truth[pid], strategy=LabelStrategy.RANDOM)
                               for pid in picked])
    products_category_refresh(product_ids=picked)
    return len(picked)


def card_coverage(version) -> float | None:
    """Share of labelled test products whose card suggestions (model top-5 + the rules' exclusive categories)
    hold the right category: the labelling card's merge, read straight from the tables."""
    from classifier.models import Prediction
    from labelapp.catalogue.models import Category, RuleLabel
    from labelapp.catalogue.services.product_categories import catalogue_accuracy_measure

    truth = catalogue_accuracy_measure().truth
    exclusive = set(Category.objects.filter(is_exclusive=True).values_list("id", flat=True))
    offered: dict[int, set[int]] = {pid: set() for pid in truth}
    for pid, top_k in Prediction.objects.filter(model_version=version, product_id__in=list(truth)).values_list(
            "product_id", "top_k"):
        offered[pid].update(int(category_id) for category_id, _ in top_k[:5])
    for pid, category_id in RuleLabel.objects.filter(product_id__in=list(truth)).values_list("product_id",
                                                                                              "category_id"):
        if category_id in exclusive:
            offered[pid].add(category_id)
    return sum(truth[pid] in offered[pid] for pid in truth) / len(truth) if truth else None


def train(name: str, *, params: dict) -> dict:
    """Train, evaluate, predict and (guardedly) promote one run; return its figures."""
    from classifier.models import ModelVersion, TrainStatus
    from classifier.services.pipeline import train_run_execute
    from classifier.services.runs import train_run_create

    started = time.perf_counter()
    run = train_run_create(architecture=params.pop("architecture", None), objectives=["exclusive", "rule"],
                           params=params, feature_config=FEATURES, schedule=False, trigger="command")
    run = train_run_execute(train_run_id=run.id)
    if run.status != TrainStatus.SUCCEEDED:
        sys.exit(f"{name}: run {run.id} {run.status}: {run.error}")
    version = ModelVersion.objects.get(train_run=run)
    promotion = run.metrics.get("promotion", {})
    catalogue = promotion.get("catalogue", {})
    figures = {"name": name, "seconds": time.perf_counter() - started, "outcome": run.outcome,
               "accuracy": run.metrics.get("ground_truth", {}).get("exclusive", {}).get("accuracy"),
               "before": catalogue.get("before"), "after": catalogue.get("after"),
               "labels": run.data_counts.get("exclusive_labels"), "weak": run.data_counts.get("weak_targets"),
               "measured": version.precision_measured, "version": version,
               "catalogue": catalogue.get("after") if run.outcome != "blocked" else catalogue.get("before")}
    print(f"  {name}: model accuracy {fmt(figures['accuracy'])}; catalogue {fmt(figures['before'])} → "
          f"{fmt(figures['after'])} ({run.outcome}: {run.promotion_reason}); {figures['labels']} labels, weak "
          f"{figures['weak']}; precision {'measured' if figures['measured'] else 'unmeasured'}; "
          f"{figures['seconds']:.0f} s", flush=True)
    return figures


def fmt(value) -> str:
    return "–" if value is None else f"{float(value):.4f}"


def spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{statistics.mean(values):.4f} ± {(max(values) - min(values)) / 2:.4f}"


def run(args) -> None:
    print("\n1. catalogue (feed hidden), ground truth and bootstrap rules", flush=True)
    dev_truth = catalogue_build(args.limit)
    alone = rules_alone()
    print(f"\n2. rules alone: catalogue accuracy {fmt(alone['catalogue'])} on {alone['n']:,} test products; the rules "
          f"cover {alone['covered']:.1%} of them, right on {fmt(alone['rules_on_covered'])} of those", flush=True)
    base = {name: value for name, value in (("epochs", args.epochs), ("architecture", args.architecture))
            if value is not None}
    rows = []
    for seed in range(args.seeds):
        print(f"\n3. seed {seed}", flush=True)
        row = {"seed": seed}
        slate_clean()
        zero = train("0 labels, weak targets", params={**base, "random_state": seed})
        row.update(zero_model=zero["accuracy"], zero_catalogue=zero["catalogue"], zero_before=zero["before"],
                   zero_card=card_coverage(zero["version"]))
        print(f"  card suggestions hold the right category for {fmt(row['zero_card'])} of the test products")
        slate_clean()
        random_labels(dev_truth, args.labels, seed)
        few = train(f"{args.labels} random labels + weak targets", params={**base, "random_state": seed})
        row.update(few_model=few["accuracy"], few_catalogue=few["catalogue"], few_before=few["before"])
        slate_clean()
        random_labels(dev_truth, args.labels_only, seed)
        only = train(f"{args.labels_only} random labels only", params={**base, "random_state": seed,
                                                                        "weak_targets": False})
        row.update(only_model=only["accuracy"])
        row["drops"] = sum(1 for r in (zero, few, only) if r["after"] is not None and r["before"] is not None
                           and r["catalogue"] < r["before"])
        rows.append(row)
    summary_print(rows, alone, args)


def summary_print(rows: list[dict], alone: dict, args) -> None:
    print("\nsummary (test split, articleType; mean ± half the range over seeds)")
    print(f"  rules alone: catalogue {fmt(alone['catalogue'])}; rules on the products they cover "
          f"{fmt(alone['rules_on_covered'])} ({alone['covered']:.1%} covered)")
    columns = [("zero_model", "0 labels: model accuracy"), ("zero_card", "0 labels: card holds the answer"),
               ("zero_catalogue", "0 labels: catalogue after promotion"),
               ("few_model", f"{args.labels} labels + weak: model accuracy"),
               ("few_catalogue", f"{args.labels} labels + weak: catalogue"),
               ("only_model", f"{args.labels_only} labels only: model accuracy")]
    for key, title in columns:
        print(f"  {title:<42} {spread([r[key] for r in rows]):>18}   per seed: "
              + ", ".join(fmt(r[key]) for r in rows))
    drops = sum(r["drops"] for r in rows)
    print(f"  promotions that lowered the catalogue's accuracy: {drops} of {3 * len(rows)}")
    goals = [
        ("0 labels: model ≥ rules on the products they cover", statistics.mean(r["zero_model"] for r in rows)
         >= (alone["rules_on_covered"] or 0)),
        ("0 labels: card holds the answer for ≥ 90 %", statistics.mean(r["zero_card"] for r in rows) >= 0.9),
        (f"{args.labels} labels: catalogue ≥ rules alone + 15 points",
         statistics.mean(r["few_catalogue"] for r in rows) >= (alone["catalogue"] or 0) + 0.15),
        (f"{args.labels} labels: model ≥ {args.labels_only}-label labels-only model",
         statistics.mean(r["few_model"] for r in rows) >= statistics.mean(r["only_model"] for r in rows)),
        ("catalogue accuracy never drops at a promotion", drops == 0),
    ]
    for name, met in goals:
        print(f"  goal {'MET    ' if met else 'NOT MET'} {name}")


if __name__ == "__main__":
    main()
