"""Time the database-backed training pipeline on the full Myntra catalogue, stage by stage, and on a 100k catalogue.

Run:  DJANGO_DEBUG=1 .venv/bin/python bench/bench_training_pipeline.py [--architectures wide_deep cnn] [--labels 2000]
          [--all-labels] [--pool 100000] [--pool-rules both] [--epochs E] [--limit N]

In a throwaway database (created and migrated here, dropped at the end):

1. The catalogue as `make full-myntra` builds it: a taxonomy CSV of Myntra's masterCategory > subCategory >
   articleType paths (from styles_clean.csv; leaves exclusive) through `import_taxonomy`, the raw noisy
   styles.csv through `import_products --source myntra --mapping demo/mappings/myntra.toml` (without --images:
   the photos enter as their embeddings instead, written straight into ImageEmbedding as halfvec under
   SIMILARITY_MODEL_VERSION; the vectors are cached in bench/out/ under bench_precision.py's key, so either
   bench reuses the other's cache).
2. Ground truth: the test split labelled from the feed category (the hand-labelled ground truth), a dev seed of
   --labels products (the fixed pseudo-random order of `import_ground_truth --limit`), `bootstrap_rules` and
   `apply_rules`.
3. One pipeline run per architecture (objectives exclusive + rule, demo/classifier.toml as the feature config:
   title words + characters, gender, photo), exactly as the ml worker runs it: `train_run_create(schedule=False)`
   then `train_run_execute`. Printed per run: data counts, seconds per stage, predictions written per second,
   ground-truth accuracy / macro-F1, rule-set micro-F1 and the headline metric.
4. --all-labels: the whole dev split labelled from the feed, one more run of the best architecture (the fully
   supervised upper bound, to compare with bench_classifier.py's figures in the README).
5. --pool N: the catalogue grown to N products with noisy copies of Myntra rows (words dropped and swapped,
   titles re-cased; new external ids, no photos), then one run of the best architecture: "retrain + predict an
   N-product pool, database included". --pool-rules: `skip` leaves the copies without rule labels (the training
   set stays the one of step 3/4, as in bench_classifier.py), `apply` runs `apply_rules` over them first (what
   the product does: every copy a rule fires on becomes a rule-objective training row), `both` times both.

The load average is printed at the start, around each run and at the end: the development machine's 2 cores are
shared with other jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

MYNTRA = ROOT.parent / "shared" / "datasets" / "myntra-fashion"
OUT = ROOT / "bench" / "out"
BENCH_DATABASE = "bench_labelapp_training"
SOURCE = "myntra"
POOL_GOAL_S = 120.0
STAGES = ("dataset", "train", "save", "evaluate", "predict", "promote")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architectures", nargs="+", default=["wide_deep", "cnn"])
    parser.add_argument("--labels", type=int, default=2000, help="dev products labelled from the feed (the seed)")
    parser.add_argument("--all-labels", action="store_true",
                        help="then label the whole dev split and run the best architecture once more")
    parser.add_argument("--pool", type=int, default=0, help="then grow the catalogue to N products and time a run")
    parser.add_argument("--pool-rules", choices=("skip", "apply", "both"), default="both",
                        help="rule labels for the pool's copies (see the module docstring)")
    parser.add_argument("--best", help="architecture for --all-labels / --pool (default: best ground-truth accuracy)")
    parser.add_argument("--epochs", type=int, help="default: CLASSIFIER_EPOCHS")
    parser.add_argument("--patience", type=int, help="default: CLASSIFIER_PATIENCE")
    parser.add_argument("--batch-size", type=int, help="default: CLASSIFIER_BATCH_SIZE")
    parser.add_argument("--limit", type=int, default=0, help="import only the first N rows of styles.csv (smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (MYNTRA / "images").is_dir():
        sys.exit(f"no photos at {MYNTRA / 'images'}")

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    started = time.perf_counter()
    print(f"load average at start: {load_average()}  ({os.cpu_count()} CPUs)", flush=True)
    # A private artefact root: pruning deletes files under it that this database does not know.
    settings.ARTEFACT_ROOT = OUT / "artefacts_training_pipeline"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = BENCH_DATABASE
    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        run(args)
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)
        import shutil

        shutil.rmtree(settings.ARTEFACT_ROOT, ignore_errors=True)
    print(f"\nload average at end: {load_average()}; whole bench {time.perf_counter() - started:.0f} s", flush=True)


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def timed(label: str, function, *args, **kwargs):
    """Call `function`, print how long it took, and return its result."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


def command(name: str, *args, **options) -> str:
    """Run a management command, return its output (the progress bars are not printed)."""
    from django.core.management import call_command

    out = io.StringIO()
    with contextlib.redirect_stderr(out):  # tqdm writes to sys.stderr itself
        call_command(name, *args, stdout=out, stderr=out, **options)
    return out.getvalue()


# --- the catalogue --------------------------------------------------------------------------------------------


def taxonomy_csv(directory: Path) -> Path:
    """Write Myntra's masterCategory > subCategory > articleType paths as a 'path,exclusive' CSV (leaves)."""
    with open(MYNTRA / "styles_clean.csv", newline="", encoding="utf-8") as handle:
        paths = sorted({(row["masterCategory"], row["subCategory"], row["articleType"])
                        for row in csv.DictReader(handle)
                        if row["masterCategory"] and row["subCategory"] and row["articleType"]})
    target = directory / "myntra_taxonomy.csv"
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "exclusive"])
        writer.writerows([" > ".join(path), "true"] for path in paths)
    return target


def styles_csv(directory: Path, limit: int) -> Path:
    """Return the raw styles.csv, or a copy of its header and first `limit` lines."""
    if not limit:
        return MYNTRA / "styles.csv"
    target = directory / "styles.csv"
    with open(MYNTRA / "styles.csv", encoding="utf-8") as source, open(target, "w", encoding="utf-8") as out:
        for number, line in enumerate(source):
            if number > limit:
                break
            out.write(line)
    return target


def image_vectors(paths: list[Path]):
    """Return float32 [n, 1280] photo embeddings: bench_precision.py's, cached under bench/out/ by the same key."""
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_precision

    return bench_precision.image_vectors(paths)


def image_embeddings_load() -> int:
    """Write the photos' vectors as ImageEmbedding rows of the products named like them; return how many."""
    from django.db import connection

    from labelapp.catalogue.models import Product
    from similarity.models import EmbeddingKind, ImageEmbedding
    from similarity.selectors.settings import similarity_settings
    from similarity.services.job_chunks import halfvec_texts
    from similarity.services.spaces import embedding_space_ensure

    # Every photo, in bench_precision.py's order, so that the cache key is the same whatever --limit says.
    paths = sorted((MYNTRA / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    vectors = image_vectors(paths)
    products = {external_id: (product_id, level2_id, level3_id) for external_id, product_id, level2_id, level3_id
                in Product.objects.filter(source=SOURCE).values_list("external_id", "id", "level2_id", "level3_id")}
    wanted = [(products[path.stem], row) for row, path in enumerate(paths) if path.stem in products]
    if not wanted:
        return 0
    version = similarity_settings().model_version
    embedding_space_ensure(model_version=version, kind=EmbeddingKind.IMAGE, dim=vectors.shape[1])
    texts = halfvec_texts(vectors[[row for _, row in wanted]])
    hnsw = next(index for index in ImageEmbedding._meta.indexes if index.name == "imageembedding_hnsw_cos")
    with connection.schema_editor() as editor:  # bulk load, then build the graph once (as after a bulk import)
        editor.remove_index(ImageEmbedding, hnsw)
    ImageEmbedding.objects.bulk_create([
        ImageEmbedding(product_id=product_id, model_version=version, embedding=text, fingerprint="bench",
                       level2_id=level2_id, level3_id=level3_id)
        for ((product_id, level2_id, level3_id), _), text in zip(wanted, texts)], batch_size=1000)
    with connection.schema_editor() as editor:
        editor.add_index(ImageEmbedding, hnsw)
    return len(wanted)


def database_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def catalogue_build(args) -> None:
    from labelapp.catalogue.models import Label, Product, RuleLabel, Split
    from labelapp.catalogue.services.ground_truth import labels_import_from_feed

    print("\n1. catalogue", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        taxonomy = taxonomy_csv(Path(directory))
        timed("import_taxonomy", command, "import_taxonomy", str(taxonomy))
        timed("import_products styles.csv", command, "import_products", str(styles_csv(Path(directory), args.limit)),
              source=SOURCE, mapping=str(ROOT / "demo" / "mappings" / "myntra.toml"))
    photos = timed("photo embeddings written (halfvec, HNSW rebuilt)", image_embeddings_load)
    products = Product.objects.count()
    print(f"  {products:,} products ({Product.objects.filter(split=Split.TEST).count():,} test), "
          f"{Product.objects.filter(feed_category__is_exclusive=True).count():,} with an exclusive feed category, "
          f"{photos:,} with a photo embedding")

    print("\n2. ground truth and rules", flush=True)
    truth = timed("test split labelled from the feed", labels_import_from_feed, source=SOURCE, split=Split.TEST)
    seed = timed(f"dev seed of {args.labels:,} labels", labels_import_from_feed, source=SOURCE, split=Split.DEV,
                 limit=args.labels)
    print(f"  ground truth {truth.labelled:,} test products; seed {seed.labelled:,} dev products")
    timed("bootstrap_rules", command, "bootstrap_rules")
    timed("apply_rules", command, "apply_rules")
    print(f"  {Label.objects.count():,} labels; {RuleLabel.objects.count():,} rule labels on "
          f"{RuleLabel.objects.values('product').distinct().count():,} products")
    timed("ANALYZE", database_analyze)


# --- the pool -------------------------------------------------------------------------------------------------


def pool_grow(*, size: int, seed: int) -> int:
    """Add noisy copies of the Myntra rows until the catalogue holds `size` products; return how many were added."""
    import numpy as np

    from labelapp.catalogue.models import Category, CategorySource, Product, split_for

    missing = size - Product.objects.count()
    if missing <= 0:
        return 0
    originals = list(Product.objects.filter(source=SOURCE).order_by("id").values(
        "external_id", "raw", "title", "description", "brand", "category_path", "gender", "size", "attributes",
        "feed_category_id"))
    levels = {category_id: (level2_id, level3_id) for category_id, level2_id, level3_id
              in Category.objects.values_list("id", "level2_id", "level3_id")}
    rng = np.random.default_rng(seed)
    batch = []
    added = 0
    for position, source in enumerate(rng.integers(0, len(originals), missing)):
        original = originals[source]
        words = original["title"].split()
        words = [word for word in words if rng.random() > 0.1] or words
        if len(words) > 2 and rng.random() < 0.3:
            i = int(rng.integers(0, len(words) - 1))
            words[i], words[i + 1] = words[i + 1], words[i]
        title = " ".join(words)
        recase = rng.random()
        title = title.upper() if recase < 0.1 else title.lower() if recase < 0.2 else title
        external_id = f"{original['external_id']}-pool{position}"
        category_id = original["feed_category_id"]
        level2_id, level3_id = levels.get(category_id, (None, None))
        raw = dict(original["raw"]) if isinstance(original["raw"], dict) else {}
        raw.update({"id": external_id, "productDisplayName": title})
        batch.append(Product(
            source=SOURCE, external_id=external_id, raw=raw, title=title, description=original["description"],
            brand=original["brand"], category_path=original["category_path"], gender=original["gender"],
            size=original["size"], attributes=original["attributes"],
            split=split_for(source=SOURCE, external_id=external_id), feed_category_id=category_id,
            category_id=category_id, category_source=CategorySource.FEED if category_id else CategorySource.NONE,
            level2_id=level2_id, level3_id=level3_id))
        if len(batch) == 5000:
            Product.objects.bulk_create(batch)
            added += len(batch)
            batch = []
    if batch:
        Product.objects.bulk_create(batch)
        added += len(batch)
    return added


# --- the pipeline ---------------------------------------------------------------------------------------------


def pipeline_run(*, name: str, architecture: str, feature_config: str, params: dict) -> dict | None:
    """Queue and execute one run as the ml worker does; print and return its figures (None if it failed)."""
    from classifier.models import ModelVersion, TrainStatus
    from classifier.services.pipeline import train_run_execute
    from classifier.services.reports import headline
    from classifier.services.runs import train_run_create
    from labelapp.catalogue.models import Product

    products = Product.objects.count()
    print(f"\n  [{name}] {architecture} on {products:,} products; load average {load_average()}", flush=True)
    run = train_run_create(architecture=architecture, objectives=["exclusive", "rule"], params=params,
                           feature_config=feature_config, schedule=False, trigger="command")
    started = time.perf_counter()
    run = train_run_execute(train_run_id=run.id)
    wall = time.perf_counter() - started
    if run.status != TrainStatus.SUCCEEDED:
        print(f"  run {run.id} {run.status}: {run.error}")
        return None
    version = ModelVersion.objects.get(train_run=run)
    counts, timings, metrics = run.data_counts, run.timings, run.metrics
    ground_truth = metrics.get("ground_truth", {}).get("exclusive", {})
    rule = metrics.get("rule_test", {}).get("rule", {})
    rule_exclusive = metrics.get("rule_test", {}).get("exclusive", {})
    headline_metric, headline_value = headline(metrics)
    figures = {
        "name": name, "architecture": architecture, "products": products, "counts": counts, "timings": timings,
        "total": sum(timings.get(stage, 0.0) for stage in STAGES), "wall": wall,
        "epochs": len((run.history or {}).get("loss", [])),
        "predictions": version.predictions_count,
        "predictions_per_s": version.predictions_count / max(timings.get("predict", 0.0), 1e-9),
        "accuracy": ground_truth.get("accuracy"), "macro_f1": ground_truth.get("macro_f1"),
        "top3": ground_truth.get("top3_accuracy"), "rule_micro_f1": rule.get("micro_f1"),
        "rule_set_accuracy": rule_exclusive.get("accuracy"),
        "headline": f"{headline_metric} = {fmt(headline_value)}", "outcome": run.outcome,
    }
    print(f"  data: train {counts['train']:,} (exclusive labels {counts['exclusive_labels']:,}, rule-known "
          f"{counts['rule_known']:,}, with photo {counts['with_photo']:,}), validation {counts['validation']:,}, "
          f"test GT {counts['test_ground_truth']:,}, test rule {counts['test_rule']:,}; {counts['classes']} classes, "
          f"{counts['rule_classes']} rule classes; batch {counts.get('batch_size')}, "
          f"{figures['epochs']}/{counts.get('epochs')} epochs")
    print("  seconds: " + ", ".join(f"{stage} {timings.get(stage, 0.0):.1f}" for stage in STAGES)
          + f"; total {figures['total']:.1f} (wall {wall:.1f}); {figures['predictions']:,} predictions, "
          f"{figures['predictions_per_s']:,.0f}/s")
    print(f"  ground truth: accuracy {fmt(figures['accuracy'])}, macro-F1 {fmt(figures['macro_f1'])}, top-3 "
          f"{fmt(figures['top3'])}; rule set: micro-F1 {fmt(figures['rule_micro_f1'])}, exclusive accuracy "
          f"{fmt(figures['rule_set_accuracy'])}; headline {figures['headline']}; {figures['outcome']}; "
          f"load average {load_average()}", flush=True)
    return figures


def fmt(value) -> str:
    return "–" if value is None else f"{float(value):.4f}"


def table_print(results: list[dict]) -> None:
    header = (f"{'run':<22} {'arch':<9} {'products':>8} {'train':>6} {'val':>5} {'testGT':>6} {'testR':>6} {'ep':>3} "
              + " ".join(f"{stage[:7]:>7}" for stage in STAGES)
              + f" {'total':>7} {'pred/s':>7} {'GT acc':>6} {'GT mF1':>6} {'rule µF1':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        c, t = r["counts"], r["timings"]
        print(f"{r['name']:<22} {r['architecture']:<9} {r['products']:>8,} {c['train']:>6,} {c['validation']:>5,} "
              f"{c['test_ground_truth']:>6,} {c['test_rule']:>6,} {r['epochs']:>3} "
              + " ".join(f"{t.get(stage, 0.0):>7.1f}" for stage in STAGES)
              + f" {r['total']:>7.1f} {r['predictions_per_s']:>7,.0f} {fmt(r['accuracy']):>6} {fmt(r['macro_f1']):>6} "
              f"{fmt(r['rule_micro_f1']):>8}")


def run(args) -> None:
    from classifier.services.runs import classifier_settings
    from labelapp.catalogue.models import Product, Split
    from labelapp.catalogue.services.ground_truth import labels_import_from_feed

    catalogue_build(args)
    feature_config = (ROOT / "demo" / "classifier.toml").read_text(encoding="utf-8")
    params = {name: value for name, value in (("epochs", args.epochs), ("patience", args.patience),
                                              ("batch_size", args.batch_size)) if value is not None}
    defaults = classifier_settings()
    print(f"\n3. pipeline runs (objectives exclusive + rule, demo/classifier.toml; epochs "
          f"{params.get('epochs', defaults['epochs'])}, patience {params.get('patience', defaults['patience'])}, "
          f"batch size {params.get('batch_size', 'adaptive ≤ ' + str(defaults['batch_size']))}, learning rate "
          f"{defaults['learning_rate']}, predict chunk {defaults['predict_chunk']:,})", flush=True)
    results = [r for r in (pipeline_run(name=f"seed {args.labels:,} labels", architecture=architecture,
                                        feature_config=feature_config, params=params)
                           for architecture in args.architectures) if r is not None]
    if not results:
        sys.exit("every run failed")
    best = args.best or max(results, key=lambda r: r["accuracy"] or 0.0)["architecture"]

    if args.all_labels:
        print(f"\n4. the whole dev split labelled (fully supervised upper bound), {best}", flush=True)
        labelled = timed("dev split labelled from the feed", labels_import_from_feed, source=SOURCE,
                         split=Split.DEV)
        print(f"  {labelled.labelled:,} more dev labels")
        result = pipeline_run(name="all dev labels", architecture=best, feature_config=feature_config, params=params)
        results += [result] if result else []

    pool_results = []
    if args.pool:
        print(f"\n5. catalogue grown to {args.pool:,} products (noisy copies, no photos), {best}", flush=True)
        added = timed("copies inserted", pool_grow, size=args.pool, seed=args.seed)
        print(f"  {added:,} copies; {Product.objects.count():,} products")
        timed("ANALYZE", database_analyze)
        phases = {"skip": ["skip"], "apply": ["apply"], "both": ["skip", "apply"]}[args.pool_rules]
        for phase in phases:
            if phase == "apply":
                timed("apply_rules over the grown catalogue (not part of the run)", command, "apply_rules")
                timed("ANALYZE", database_analyze)
            result = pipeline_run(name=f"pool, copies {'ruled' if phase == 'apply' else 'unruled'}",
                                  architecture=best, feature_config=feature_config, params=params)
            if result:
                pool_results.append(result)
        results += pool_results

    print("\nsummary (seconds per stage; total = sum of stages; pred/s = predictions written per second of the "
          "predict stage)")
    table_print(results)
    for r in pool_results:
        verdict = "within" if r["total"] <= POOL_GOAL_S else "over"
        print(f"\nretrain + predict a {r['products']:,}-product pool, database included ({r['name']}, "
              f"{r['architecture']}): {r['total']:.1f} s (wall {r['wall']:.1f} s) — {verdict} the {POOL_GOAL_S:.0f} s "
              f"goal on 2 cores; " + ", ".join(f"{stage} {r['timings'].get(stage, 0.0):.1f}" for stage in STAGES))


if __name__ == "__main__":
    main()
