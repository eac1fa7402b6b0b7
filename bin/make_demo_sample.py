#!/usr/bin/env python3
"""Rebuild the committed demo sample in demo/ from the Myntra data set in ../shared.

Picks a few hundred products that have photos, stratified by article type, keeps their lines of the raw
(noisy) styles.csv exactly as published, adds the 22 rows with unquoted commas, copies the photos, writes the
category tree (all Myntra paths, leaves exclusive) and a legacy rules file in the product's JSON rule format.
Deterministic: the same inputs give the same sample.
"""
from __future__ import annotations

import csv
import json
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MYNTRA = REPO.parent / "shared" / "datasets" / "myntra-fashion"
DEMO = REPO / "demo"
PER_ARTICLE_TYPE = 6
MAX_PRODUCTS = 420

# Extra keywords the legacy system had for some classes (hand-written rules look like this).
SYNONYMS = {
    "Tshirts": ["t-shirt", "tshirt", "tee"],
    "Track Pants": ["track pants", "trackpant", "joggers"],
    "Casual Shoes": ["casual shoes", "sneakers"],
    "Sports Shoes": ["sports shoes", "running shoes", "trainers"],
    "Flip Flops": ["flip flops", "flip-flops", "slippers"],
    "Trousers": ["trousers", "chinos", "pants"],
    "Sunglasses": ["sunglasses", "shades"],
    "Kurtas": ["kurta", "kurtas"],
    "Handbags": ["handbag", "handbags", "tote"],
}


def main() -> None:
    if not MYNTRA.exists():
        sys.exit(f"{MYNTRA} is absent: the demo sample is built from the shared Myntra data set")
    raw_lines = (MYNTRA / "styles.csv").read_text(encoding="utf-8").splitlines()
    header, body = raw_lines[0], raw_lines[1:]
    clean = list(csv.DictReader((MYNTRA / "styles_clean.csv").open(encoding="utf-8")))
    with_photo = {p.stem for p in (MYNTRA / "images").glob("*.jpg")}

    by_type: dict[str, list[dict]] = defaultdict(list)
    for row in clean:
        if row["id"] in with_photo:
            by_type[row["articleType"]].append(row)
    rng = random.Random(20261124)
    chosen: list[str] = []
    for article_type in sorted(by_type):
        rows = sorted(by_type[article_type], key=lambda r: int(r["id"]))
        chosen += [r["id"] for r in rng.sample(rows, min(PER_ARTICLE_TYPE, len(rows)))]
    rng.shuffle(chosen)
    chosen_set = set(chosen[:MAX_PRODUCTS])
    broken = [line for line in body if len(next(csv.reader([line]))) != 10]

    (DEMO / "images").mkdir(parents=True, exist_ok=True)
    for old in (DEMO / "images").glob("*.jpg"):
        old.unlink()
    kept = [line for line in body if line.split(",", 1)[0] in chosen_set]
    with (DEMO / "products.csv").open("w", encoding="utf-8") as out:
        out.write("\n".join([header, *kept, *broken]) + "\n")
    for product_id in sorted(chosen_set):
        shutil.copyfile(MYNTRA / "images" / f"{product_id}.jpg", DEMO / "images" / f"{product_id}.jpg")

    paths = sorted({(r["masterCategory"], r["subCategory"], r["articleType"]) for r in clean})
    with (DEMO / "taxonomy.csv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "exclusive"])
        for path in paths:
            writer.writerow([" > ".join(path), "true"])

    rules = []
    for master, sub, article_type in paths:
        words = SYNONYMS.get(article_type, [article_type.lower()])
        rules.append({
            "name": f"{master} / {sub} / {article_type}" if sum(p[2] == article_type for p in paths) > 1 else article_type,
            "category": f"{master} > {sub} > {article_type}",
            "combinator": "or",
            "conditions": [{"field": "title", "op": "contains_word", "value": w} for w in words],
        })
    rules.append({"name": "Watches (regex)", "category": "Accessories > Watches > Watches", "combinator": "and",
                  "conditions": [{"field": "title", "op": "regex", "value": r"(?i)\bwatch(es)?\b"},
                                 {"field": "category_path", "op": "contains", "value": "accessories"}]})
    (DEMO / "rules.json").write_text(json.dumps({"rules": rules}, indent=1) + "\n", encoding="utf-8")
    print(f"demo sample: {len(kept)} products with photos + {len(broken)} noisy rows, "
          f"{len(paths)} category paths, {len(rules)} rules")


if __name__ == "__main__":
    main()
