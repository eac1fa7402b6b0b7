"""Training and evaluation data from the database, as the classifier core's ProductFrame and Targets.

Targets: a product's exclusive target is its current human label (the newest Label; "none fits" is no target);
its rule-based targets are the categories its RuleLabels name (positive-only; a product no rule fired on has no
rule target). Splits: the fixed dev split trains (a hash-chosen tenth of it is the validation slice for early
stopping and threshold tuning), the test split only evaluates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
from django.db import connection

from classifier.core.frames import ProductFrame, Targets
from labelapp.models import Category, Label, Product, RuleLabel, Split
from similarity.models import IMAGE_DIM, ImageEmbedding

PRODUCT_FIELDS = ("id", "source", "external_id", "title", "description", "brand", "category_path", "gender",
                  "size", "split")


@dataclass
class CatalogueTargets:
    """Who has which target: product id → exclusive category id, product id → rule category ids."""

    exclusive: dict[int, int]
    exclusive_strategy: dict[int, str]
    rule: dict[int, set[int]]
    classes: list[int] = field(default_factory=list)
    rule_classes: list[int] = field(default_factory=list)


@dataclass
class LabelledSet:
    """Products with their features and targets; `product_ids` int64 [n] in frame order."""

    product_ids: np.ndarray
    frame: ProductFrame
    targets: Targets

    def __len__(self) -> int:
        return len(self.product_ids)

    def take(self, mask_or_indices) -> "LabelledSet":
        indices = np.flatnonzero(mask_or_indices) if np.asarray(mask_or_indices).dtype == bool else mask_or_indices
        return LabelledSet(self.product_ids[indices], self.frame.take(indices), self.targets.take(indices))


def is_validation(*, source: str, external_id: str) -> bool:
    """Return whether a dev product belongs to the fixed validation tenth (the split hash's next digit)."""
    digest = hashlib.sha1(f"{source}\x1f{external_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") // 10 % 10 == 0


def catalogue_targets_read() -> CatalogueTargets:
    """Return every product's current exclusive label and rule categories, and the class lists of both heads.

    The current label is the newest one not taken back (undo).
    Exclusive classes are the categories that carry a human label anywhere (dev or test), so a test product
    labelled with a class nobody labelled in dev still counts as an error, not as a skipped product.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT ON (product_id) product_id, category_id, strategy FROM {Label._meta.db_table} "
            f"WHERE NOT undone ORDER BY product_id, created_at DESC, id DESC")
        rows = cursor.fetchall()
    exclusive = {product_id: category_id for product_id, category_id, _ in rows if category_id is not None}
    strategies = {product_id: strategy for product_id, category_id, strategy in rows if category_id is not None}
    rule: dict[int, set[int]] = {}
    for product_id, category_id in RuleLabel.objects.values_list("product_id", "category_id").distinct().iterator(
            chunk_size=20000):
        rule.setdefault(product_id, set()).add(category_id)
    classes = sorted(set(exclusive.values()))
    rule_classes = sorted({category_id for categories in rule.values() for category_id in categories})
    return CatalogueTargets(exclusive=exclusive, exclusive_strategy=strategies, rule=rule, classes=classes,
                            rule_classes=rule_classes)


def class_ancestors(category_ids: Sequence[int]) -> dict[int, list[int]]:
    """Return class index → ancestor category ids from the top level down to the class itself."""
    lineage = dict(Category.objects.filter(id__in=list(category_ids)).values_list("id", "lineage"))
    return {index: list(lineage.get(category_id) or [category_id]) for index, category_id in enumerate(category_ids)}


def image_vectors_read(*, product_ids: Sequence[int], model_version: str) -> dict[int, np.ndarray]:
    """Return product id → float32 [1280] photo embedding of `model_version`, for the products that have one.

    halfvec_send gives the binary form (2-byte dim, 2 unused bytes, big-endian float16s): parsing it is ~50×
    faster than the text form for 1280-d vectors.
    """
    if not product_ids or not model_version:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT product_id, halfvec_send(embedding) FROM {ImageEmbedding._meta.db_table} "
            f"WHERE model_version = %s AND product_id = ANY(%s)", [model_version, list(map(int, product_ids))])
        return {product_id: np.frombuffer(bytes(raw), dtype=">f2", offset=4).astype(np.float32)
                for product_id, raw in cursor.fetchall()}


def products_frame(*, rows: Sequence[dict], image_model_version: str, image: bool = True) -> ProductFrame:
    """Return the ProductFrame of product rows (dicts of PRODUCT_FIELDS), with photo embeddings when `image`."""
    vectors = image_vectors_read(product_ids=[row["id"] for row in rows], model_version=image_model_version) \
        if image else {}
    image_matrix = present = None
    if image:
        image_matrix = np.zeros((len(rows), IMAGE_DIM), np.float32)
        present = np.zeros(len(rows), np.float32)
        for position, row in enumerate(rows):
            vector = vectors.get(row["id"])
            if vector is not None:
                image_matrix[position] = vector
                present[position] = 1.0
    return ProductFrame(
        title=[row["title"] for row in rows],
        description=[row["description"] for row in rows],
        brand=[row["brand"] for row in rows],
        # The feed's own category, as a categorical value: the last step of its path.
        category=[row["category_path"].rsplit(">", 1)[-1].strip() for row in rows],
        category_path=[row["category_path"] for row in rows],
        gender=[row["gender"] for row in rows],
        size=[row["size"] for row in rows],
        image=image_matrix, image_present=present,
    )


def product_rows(*, product_ids: Iterable[int] | None = None, split: str | None = None) -> list[dict]:
    """Return product rows (PRODUCT_FIELDS) ordered by id, optionally restricted by ids or split."""
    products = Product.objects.all()
    if product_ids is not None:
        products = products.filter(id__in=list(product_ids))
    if split is not None:
        products = products.filter(split=split)
    return list(products.order_by("id").values(*PRODUCT_FIELDS))


def product_row_chunks(*, chunk_size: int) -> Iterator[list[dict]]:
    """Yield every product's row, ordered by id, `chunk_size` at a time (keyset pagination)."""
    last_id = 0
    while True:
        chunk = list(Product.objects.filter(id__gt=last_id).order_by("id").values(*PRODUCT_FIELDS)[:chunk_size])
        if not chunk:
            return
        yield chunk
        last_id = chunk[-1]["id"]


def labelled_set_build(*, rows: Sequence[dict], targets: CatalogueTargets, objectives: Sequence[str],
                       image_model_version: str, image: bool) -> LabelledSet:
    """Return the products of `rows` that have a target for one of `objectives`, with features and targets."""
    wanted = [row for row in rows
              if ("exclusive" in objectives and row["id"] in targets.exclusive)
              or ("rule" in objectives and row["id"] in targets.rule)]
    class_index = {category_id: index for index, category_id in enumerate(targets.classes)}
    rule_index = {category_id: index for index, category_id in enumerate(targets.rule_classes)}
    exclusive = np.array([class_index[targets.exclusive[row["id"]]] if row["id"] in targets.exclusive else -1
                          for row in wanted], dtype=np.int64)
    rule = np.zeros((len(wanted), len(targets.rule_classes)), np.float32)
    rule_known = np.zeros(len(wanted), bool)
    for position, row in enumerate(wanted):
        categories = targets.rule.get(row["id"])
        if categories:
            rule_known[position] = True
            rule[position, [rule_index[category_id] for category_id in categories]] = 1.0
    return LabelledSet(
        product_ids=np.array([row["id"] for row in wanted], dtype=np.int64),
        frame=products_frame(rows=wanted, image_model_version=image_model_version, image=image),
        targets=Targets(exclusive=exclusive, classes=[str(c) for c in targets.classes], rule=rule,
                        rule_known=rule_known, rule_classes=[str(c) for c in targets.rule_classes]),
    )


def dev_test_rows() -> tuple[list[dict], list[dict]]:
    """Return (dev rows, test rows) of the catalogue."""
    rows = product_rows()
    return [row for row in rows if row["split"] == Split.DEV], [row for row in rows if row["split"] == Split.TEST]
