"""Benchmark the product import on a realistic, noisy JSON lines feed.

    DJANGO_DEBUG=1 .venv/bin/python bench/bench_import.py [--rows 100000] [--batch-size 1000] [--tracemalloc]
                                                          [--myntra]

Generates --rows products from the real Myntra titles and categories (../shared/datasets; synthetic words when
absent) with the noise real feeds carry: titles moved between fields, HTML and entities, mixed category
delimiters, prices in many formats, duplicate ids and some broken rows. Imports them through the service into
the dev database under the source 'bench-import', prints rows/s and memory, then deletes what it created.
--tracemalloc adds the Python heap peak (and slows the import down); --myntra also times the raw styles.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
MYNTRA = PROJECT.parent / "shared/datasets/myntra-fashion"
SOURCE = "bench-import"
cpu_seconds = 0.0

sys.path.insert(0, str(PROJECT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from labelapp.catalogue.models import ImportKind, ImportRun, Product  # noqa: E402
from labelapp.catalogue.services.imports.mapping import ImportMapping, mapping_load  # noqa: E402
from labelapp.catalogue.services.imports.products import products_import  # noqa: E402
from labelapp.catalogue.services.imports.runs import import_run_create, import_run_report  # noqa: E402

BENCH_MAPPING = ImportMapping.from_dict({
    "fields": {
        "external_id": ["id", "sku"],
        "title": ["title", "name", "productDisplayName"],
        "description": "description",
        "brand": "brand",
        "gender": "gender",
        "price": "price",
        "currency": "currency",
        "attributes": {"colour": ["colour", "baseColour"], "season": "season", "year": "year"},
    },
    "category": {"path": ["category", "product_type"]},
})


def myntra_rows() -> list[dict[str, str]]:
    if (MYNTRA / "styles_clean.csv").exists():
        with open(MYNTRA / "styles_clean.csv", encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    words = ["Puma", "Nike", "Men", "Women", "Blue", "Black", "Cotton", "Slim", "Shirt", "Jeans", "Watch", "Shoes"]
    rng = random.Random(1)
    return [{"productDisplayName": " ".join(rng.choices(words, k=6)), "masterCategory": "Apparel",
             "subCategory": rng.choice(["Topwear", "Bottomwear"]), "articleType": rng.choice(["Shirts", "Jeans"]),
             "gender": rng.choice(["Men", "Women"]), "baseColour": rng.choice(["Blue", "Black"]),
             "season": "Summer", "year": "2012"} for _ in range(1000)]


def path_noisy(names: list[str], rng: random.Random):
    style = rng.randrange(7)
    if style == 0:
        return names  # a real list
    if style == 1:
        return json.dumps(names)
    return [" > ", ">>", " / ", "|", " › ", " // "][style - 2].join(names)


def price_noisy(rng: random.Random):
    amount = rng.randrange(199, 99999) / 100
    if rng.random() < 0.02:
        return "call for price"
    return rng.choice([
        f"{amount:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".") + " EUR",
        f"${amount:.2f}",
        f"{amount:.2f}".replace(".", ",") + " €",
        str(int(amount)),
        amount,
        "Rs. " + f"{int(amount):,}",
    ])


def feed_generate(path: Path, *, rows: int, seed: int = 7) -> None:
    """Write `rows` JSON lines: real titles and categories with real-world noise, ~0.5% broken."""
    rng = random.Random(seed)
    base = myntra_rows()
    with open(path, "w", encoding="utf-8") as handle:
        for n in range(rows):
            item = base[n % len(base)]
            title = item["productDisplayName"]
            roll = rng.random()
            if roll < 0.001:
                handle.write(f'{{"id": "broken-{n}", "title": "unterminated\n')
                continue
            if roll < 0.002:
                handle.write(json.dumps([n, title]) + "\n")
                continue
            if roll < 0.004:
                handle.write(json.dumps({"id": f"b{n}", "description": "no title here"}) + "\n")
                continue
            if roll < 0.005:
                handle.write(f'{{"id": "nul-{n}", "title": "bad \\u0000 byte"}}\n')
                continue
            if rng.random() < 0.15:
                title = f"<b>{title}</b> &amp; more&nbsp; "
            record = {
                # ~1% of ids repeat a recent one: the later row wins.
                ("sku" if rng.random() < 0.2 else "id"): f"B{n - rng.randrange(1, 50) if rng.random() < 0.01 else n}",
                ("name" if rng.random() < 0.3 else "title"): title,
                "description": f"<p>{title}.</p><ul><li>{item['baseColour']}</li><li>{item['season']}</li></ul>",
                "brand": title.split(" ")[0],
                "gender": item["gender"],
                ("product_type" if rng.random() < 0.2 else "category"): path_noisy(
                    [item["masterCategory"], item["subCategory"], item["articleType"]], rng),
                "price": price_noisy(rng),
                ("baseColour" if rng.random() < 0.5 else "colour"): item["baseColour"],
                "season": item["season"],
                "year": item["year"],
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def source_delete(source: str) -> None:
    """Delete the benchmark's products. Nothing refers to them (no labels, rules or embeddings), so one
    DELETE does, without the ORM's cascade collector touching other apps' tables."""
    with connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM "{Product._meta.db_table}" WHERE source = %s', [source])


def import_timed(path: Path, *, source: str, mapping: ImportMapping, batch_size: int | None,
                 trace: bool) -> tuple[ImportRun, float, float, float | None]:
    """Import a file; return the run, seconds, ru_maxrss growth (MiB) and the tracemalloc peak (MiB)."""
    global cpu_seconds
    run = import_run_create(kind=ImportKind.PRODUCTS, file_name=str(path), source=source,
                            options={"benchmark": True})
    rss_before = maxrss_mib()
    if trace:
        tracemalloc.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    run = products_import(import_run=run, path=path, mapping=mapping, batch_size=batch_size)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    peak = None
    if trace:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return run, seconds, maxrss_mib() - rss_before, peak


def report(label: str, run: ImportRun, seconds: float, rss_delta: float, peak: float | None) -> None:
    print(import_run_report(import_run=run, issues_limit=5))
    print(f"{label}: {run.rows_total:,} rows in {seconds:.1f}s = {run.rows_total / seconds:,.0f} rows/s "
          f"(this process's CPU {cpu_seconds:.1f}s, the rest is Postgres and I/O); "
          f"ru_maxrss +{rss_delta:.1f} MiB (now {maxrss_mib():.0f} MiB)"
          + (f"; tracemalloc peak {peak:.1f} MiB" if peak is not None else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--tracemalloc", action="store_true", help="also report the Python heap peak (slower)")
    parser.add_argument("--myntra", action="store_true", help="also import the raw Myntra styles.csv")
    args = parser.parse_args()
    print(f"baseline ru_maxrss {maxrss_mib():.0f} MiB (Django set up)")

    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
        path = Path(folder) / "feed.jsonl"
        started = time.perf_counter()
        # In a child process, so that the Myntra rows it loads do not raise this process's ru_maxrss baseline.
        child = multiprocessing.get_context("fork").Process(target=feed_generate, args=(path,),
                                                             kwargs={"rows": args.rows})
        child.start()
        child.join()
        if child.exitcode:
            sys.exit(f"feed generation failed (exit code {child.exitcode})")
        print(f"generated {args.rows:,} rows ({path.stat().st_size / 2**20:.1f} MiB) "
              f"in {time.perf_counter() - started:.1f}s")
        runs = []
        try:
            source_delete(SOURCE)
            for label in ("first import (inserts)", "second import (updates)"):
                run, seconds, rss, peak = import_timed(path, source=SOURCE, mapping=BENCH_MAPPING,
                                                       batch_size=args.batch_size, trace=args.tracemalloc)
                runs.append(run)
                report(label, run, seconds, rss, peak)
            if args.myntra and (MYNTRA / "styles.csv").exists():
                source_delete("bench-myntra")
                mapping = mapping_load(path=PROJECT / "demo/mappings/myntra.toml")
                run, seconds, rss, peak = import_timed(MYNTRA / "styles.csv", source="bench-myntra", mapping=mapping,
                                                       batch_size=args.batch_size, trace=args.tracemalloc)
                runs.append(run)
                report("raw Myntra styles.csv", run, seconds, rss, peak)
                assert (run.rows_total, run.rows_created, run.rows_repaired, run.rows_rejected) == (
                    44446, 44446, 22, 0), "Myntra import lost or rejected rows"
        finally:
            for source in (SOURCE, "bench-myntra"):
                source_delete(source)
            ImportRun.objects.filter(pk__in=[run.pk for run in runs]).delete()


if __name__ == "__main__":
    main()
