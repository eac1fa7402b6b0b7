"""Benchmark the legacy rule engine, and `rules_apply` end to end.

Run:  DJANGO_DEBUG=1 .venv/bin/python bench/bench_rules.py [--products 200000] [--naive 2000] [--skip-db]

Rules: one bootstrap keyword rule (title contains_word k1 OR k2 ...) per Google product taxonomy category of
depth <= 3 (about 1,500 names), plus a few "and", "contains" and "regex" rules so every path of the engine runs.
Products: synthetic titles built from real Myntra titles (brands, words and spellings recombined, case and
hyphenation varied), with the Myntra gender.

1. Engine alone: compile time, products/s of RuleMatcher.match, and of the naive evaluator on a subset (the two
   must agree there). Also the substring prefilter on its own: the trie regex against two alternatives.
2. End to end (unless --skip-db): in a throwaway database (created and dropped here, so the development
   database and its rules are never touched), the taxonomy, bootstrap rules and products under source "bench"
   go into Postgres; `rules_apply` runs twice (first run, then an idempotent re-run); dropping the database
   cleans everything up (deleting 200k products through the ORM first would only add a minute).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from labelapp.catalogue.rules_engine import (  # noqa: E402  (pure Python: no Django needed for part 1)
    Condition,
    RuleDefinition,
    category_name_keywords,
    rules_compile,
    rules_match_naive,
    text_fold,
)

DATASETS = Path("/work/shared/datasets")
TAXONOMY = DATASETS / "google-product-taxonomy" / "taxonomy-with-ids.en-US.txt"
MYNTRA = DATASETS / "myntra-fashion" / "styles_clean.csv"
BENCH_SOURCE = "bench"
BENCH_DATABASE = "bench_labelapp_rules"

# Extra rules beyond the bootstrap keywords: (name, category path, combinator, conditions).
EXTRA_RULES = [
    *[(f"and:{word}:{gender}", "Apparel & Accessories > Clothing", "and",
       [("title", "contains_word", word), ("gender", "equals", gender)])
      for word in ("shirt", "tshirt", "jeans", "kurta", "dress", "saree", "shorts", "track pants", "top", "heels")
      for gender in ("Men", "Women")],
    *[(f"contains:{word}", "Apparel & Accessories > Shoes", "or", [("title", "contains", word)])
      for word in ("shoe", "sneaker", "sandal", "flip flop", "slipper", "boot", "loafer", "moccasin")],
    ("regex:size", "Apparel & Accessories > Clothing", "and", [("title", "regex", r"(?i)\b(XXL|XL|XS)\b")]),
    ("regex:pack", "Apparel & Accessories > Clothing", "or", [("title", "regex", r"(?i)pack of \d+")]),
    ("regex:tee", "Apparel & Accessories > Clothing", "and",
     [("title", "regex", r"(?i)\bt[- ]?shirts?\b"), ("gender", "equals", "women")]),
]


def taxonomy_read(max_depth: int = 3) -> list[tuple[str, list[str]]]:
    """Return (google id, path names) for the taxonomy's categories of depth <= max_depth."""
    rows = []
    for line in TAXONOMY.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        google_id, path = line.split(" - ", 1)
        names = path.split(" > ")
        if len(names) <= max_depth:
            rows.append((google_id.strip(), names))
    return rows


def myntra_read() -> list[dict]:
    with MYNTRA.open(encoding="utf-8", newline="") as handle:
        return [{"title": row["productDisplayName"], "gender": row["gender"]} for row in csv.DictReader(handle)
                if row["productDisplayName"]]


_SPELLINGS = [(re.compile(r"(?i)\bt-?shirt"), ["T-Shirt", "Tshirt", "T shirt", "tee shirt", "TSHIRT"]),
              (re.compile(r"(?i)\btrack pants\b"), ["Track Pants", "Trackpants", "track-pants"])]
_NOISE = ["XL", "Pack of 2", "Slim Fit", "Cotton", "New", "2024", "Combo", "-", "|", "(Set of 3)", "Regular"]


def titles_synthesise(rows: list[dict], count: int, *, seed: int = 7) -> list[dict]:
    """Return `count` products: real Myntra titles recombined (brand swap, extra words, spelling, case)."""
    rng = random.Random(seed)
    products = []
    for _ in range(count):
        base = rng.choice(rows)
        words = base["title"].split()
        if rng.random() < 0.5 and len(words) > 2:
            words[0] = rng.choice(rows)["title"].split()[0]  # another brand
        if rng.random() < 0.3:
            other = rng.choice(rows)["title"].split()
            words += other[rng.randrange(len(other)):]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), rng.choice(_NOISE))
        title = " ".join(words)
        for pattern, spellings in _SPELLINGS:
            if rng.random() < 0.5:
                title = pattern.sub(rng.choice(spellings), title)
        roll = rng.random()
        title = title.upper() if roll < 0.05 else title.lower() if roll < 0.15 else title
        products.append({"title": title, "gender": base["gender"]})
    return products


def definitions_build(taxonomy: list[tuple[str, list[str]]]) -> list[RuleDefinition]:
    """The engine-only rule set: bootstrap keywords per taxonomy name, plus EXTRA_RULES."""
    definitions, category_ids = [], {}
    for position, (google_id, names) in enumerate(taxonomy, start=1):
        category_ids[" > ".join(names)] = int(google_id)
        keywords = category_name_keywords(names[-1])
        if keywords:
            definitions.append(RuleDefinition(
                rule_id=position, category_id=int(google_id), combinator="or",
                conditions=tuple(Condition("title", "contains_word", keyword) for keyword in keywords)))
    for offset, (_, path, combinator, conditions) in enumerate(EXTRA_RULES, start=100_000):
        definitions.append(RuleDefinition(rule_id=offset, category_id=category_ids[path], combinator=combinator,
                                          conditions=tuple(Condition(*condition) for condition in conditions)))
    return definitions


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f} products/s  ({count:,} in {seconds:.2f} s)"


def bench_engine(definitions: list[RuleDefinition], products: list[dict], naive_count: int) -> None:
    started = time.perf_counter()
    matcher = rules_compile(definitions, sample=products[:2000])  # as rules_apply does, for the "and" anchors
    print(f"compile {len(definitions):,} rules (with a 2,000-product sample): {time.perf_counter() - started:.3f} s")

    started = time.perf_counter()
    results = matcher.match_many(products)
    seconds = time.perf_counter() - started
    labelled = sum(1 for hits in results if hits)
    print(f"engine             {rate(len(products), seconds)}; {sum(map(len, results)):,} labels, "
          f"{labelled / len(products):.1%} of products labelled")

    subset = products[:naive_count]
    started = time.perf_counter()
    naive = [rules_match_naive(definitions, product) for product in subset]
    seconds_naive = time.perf_counter() - started
    print(f"naive              {rate(len(subset), seconds_naive)}")
    mismatches = sum(1 for expected, got in zip(naive, results) if expected != got)
    print(f"engine == naive on the {len(subset):,}-product subset: {mismatches == 0} ({mismatches} mismatches); "
          f"speed-up x{(len(products) / seconds) / (len(subset) / seconds_naive):,.0f}")
    if mismatches:
        raise SystemExit("the engine disagrees with the naive evaluator")


def bench_substring_prefilter(definitions: list[RuleDefinition], products: list[dict]) -> None:
    """How to find every `contains` literal in a title: the trie regex, an unfactored alternation, a loop."""
    literals = sorted({text_fold(c.value) for rule in definitions for c in rule.conditions if c.op != "regex"})
    contains_rules = [
        RuleDefinition(rule_id=position, category_id=1, conditions=(Condition("title", "contains", literal),))
        for position, literal in enumerate(literals)]
    matcher = rules_compile(contains_rules)
    flat = re.compile("(?=(" + "|".join(re.escape(literal) for literal in sorted(literals, key=len, reverse=True))
                      + "))")
    print(f"substring prefilter: every rule's literal ({len(literals):,}) as a `contains` rule on titles:")
    for label, count, find in (
        ("engine (trie regex)          ", 20_000, lambda product: matcher.match(product)),
        ("one flat alternation, longest first", 1_000, lambda product: flat.findall(text_fold(product["title"]))),
        ("a loop of `literal in title` ", 1_000,
         lambda product: [lit for lit in literals if lit in text_fold(product["title"])]),
    ):
        started = time.perf_counter()
        for product in products[:count]:
            find(product)
        print(f"  {label:36} {rate(count, time.perf_counter() - started)}")


def bench_database(taxonomy: list[tuple[str, list[str]]], products: list[dict], chunk_size: int) -> None:
    import django

    django.setup()
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})["NAME"] = BENCH_DATABASE
    original_name = connection.settings_dict["NAME"]
    started = time.perf_counter()
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    print(f"throwaway database {BENCH_DATABASE} migrated in {time.perf_counter() - started:.1f} s")
    try:
        _bench_database_run(taxonomy, products, chunk_size)
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)
        print(f"dropped {BENCH_DATABASE}")


def _bench_database_run(taxonomy, products, chunk_size) -> None:
    from labelapp.catalogue.models import Category, LegacyRule, Product, RuleLabel, split_for
    from labelapp.catalogue.services.categories import category_path_ensure
    from labelapp.catalogue.services.rules import rules_apply, rules_bootstrap

    started = time.perf_counter()
    cache: dict = {}
    for google_id, names in taxonomy:
        category_path_ensure(names=names, external_id=google_id, cache=cache)
    Category.objects.update(is_exclusive=True)  # every depth<=3 node gets a bootstrap rule, as in part 1
    written = rules_bootstrap()
    for name, path, combinator, conditions in EXTRA_RULES:
        rule = LegacyRule(name=name, category=Category.objects.get(full_path=path), combinator=combinator,
                          conditions=[{"field": f, "op": op, "value": v} for f, op, v in conditions], origin="manual")
        rule.full_clean()
        rule.save()
    print(f"{Category.objects.count():,} categories, {written:,} bootstrap + {len(EXTRA_RULES)} other rules "
          f"in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    Product.objects.bulk_create([
        Product(source=BENCH_SOURCE, external_id=f"b{position}", raw=product, title=product["title"],
                gender=product["gender"], split=split_for(source=BENCH_SOURCE, external_id=f"b{position}"))
        for position, product in enumerate(products)], batch_size=5000)
    print(f"inserted {len(products):,} products in {time.perf_counter() - started:.1f} s")

    for run in ("first run", "re-run"):
        started = time.perf_counter()
        result = rules_apply(chunk_size=chunk_size)
        seconds = time.perf_counter() - started
        print(f"rules_apply {run:9} {rate(result.products_scanned, seconds)}; created {result.labels_created:,}, "
              f"removed {result.labels_removed:,}, labelled {result.products_labelled:,}, "
              f"category set {result.categories_set:,}")
    print(f"{RuleLabel.objects.count():,} rule labels stored; the products, labels and rules go with the database")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--naive", type=int, default=2_000, help="Products the naive evaluator checks.")
    parser.add_argument("--chunk-size", type=int, default=5_000)
    parser.add_argument("--skip-db", action="store_true", help="Benchmark the engine only.")
    args = parser.parse_args()

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}: figures are wall-clock on this machine")
    taxonomy = taxonomy_read()
    definitions = definitions_build(taxonomy)
    products = titles_synthesise(myntra_read(), args.products)
    print(f"{len(taxonomy):,} taxonomy names (depth <= 3) -> {len(definitions):,} rules; "
          f"{len(products):,} synthetic products")
    bench_engine(definitions, products, args.naive)
    bench_substring_prefilter(definitions, products)
    if not args.skip_db:
        bench_database(taxonomy, products, args.chunk_size)


if __name__ == "__main__":
    main()
