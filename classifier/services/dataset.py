"""Training and evaluation data from the database, as the classifier core's ProductFrame and Targets.

Targets: a product's exclusive target is its current human label (the newest Label; "none fits" is no target),
weight 1. A dev product without one may get a weak exclusive target from the legacy system (`weak_targets_read`):
the exclusive category its rules name when they name exactly one, or its feed category when that is exclusive,
weighted by the measured precision of that source (SourceTrust; the source with the higher estimate wins when
they disagree). Its rule-based targets are the categories its RuleLabels name (positive-only; a product no rule
fired on has no rule target). Splits: the fixed dev split trains (a hash-chosen tenth of it is the validation
slice for early stopping, calibration and threshold tuning), the test split only evaluates — on human labels only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
from django.db import connection

from classifier.core.frames import ProductFrame, Targets
from labelapp.catalogue.models import Category, Label, Product, RuleLabel, SourceTrust, Split, TrustKind
from similarity.models import IMAGE_DIM, ImageEmbedding

PRODUCT_FIELDS = ("id", "source", "external_id", "title", "description", "brand", "category_path", "gender",
                  "size", "split")
FEED_CATEGORY_COLUMNS = ("category", "category_path")
"""The ProductFrame columns `products_frame` fills from the feed's own category (its raw path, the path's last step)."""


@dataclass
class CatalogueTargets:
    """Who has which target: product id → exclusive category id, product id → rule category ids.

    `weak` maps dev products without a human label to (category id, weight, source) from the legacy system.
    """

    exclusive: dict[int, int]
    exclusive_strategy: dict[int, str]
    rule: dict[int, set[int]]
    classes: list[int] = field(default_factory=list)
    rule_classes: list[int] = field(default_factory=list)
    weak: dict[int, tuple[int, float, str]] = field(default_factory=dict)


@dataclass
class LabelledSet:
    """Products with their features and targets; `product_ids` int64 [n] in frame order; `human` bool [n]: the
    exclusive target is a human label (not a weak one)."""

    product_ids: np.ndarray
    frame: ProductFrame
    targets: Targets
    human: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.human is None:
            self.human = np.asarray(self.targets.exclusive >= 0 if self.targets.exclusive is not None
                                    else np.zeros(len(self.product_ids), bool))

    def __len__(self) -> int:
        return len(self.product_ids)

    def take(self, mask_or_indices) -> "LabelledSet":
        indices = np.flatnonzero(mask_or_indices) if np.asarray(mask_or_indices).dtype == bool else mask_or_indices
        return LabelledSet(self.product_ids[indices], self.frame.take(indices), self.targets.take(indices),
                           self.human[indices])


def is_validation(*, source: str, external_id: str) -> bool:
    """Return whether a dev product belongs to the fixed validation tenth (the split hash's next digit)."""
    digest = hashlib.sha1(f"{source}\x1f{external_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") // 10 % 10 == 0


def catalogue_targets_read(*, weak: bool = True) -> CatalogueTargets:
    """Return every product's current exclusive label and rule categories, the weak targets (with `weak`) and
    the class lists of both heads.

    The current label is the newest one not taken back (undo).
    Exclusive classes are the categories that carry a human label anywhere (dev or test) or a weak target, so a
    test product labelled with a class nobody labelled in dev still counts as an error, not as a skipped product.
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
    weak_targets = weak_targets_read(exclude=[product_id for product_id, *_ in rows]) if weak else {}
    classes = sorted(set(exclusive.values()) | {category_id for category_id, *_ in weak_targets.values()})
    rule_classes = sorted({category_id for categories in rule.values() for category_id in categories})
    return CatalogueTargets(exclusive=exclusive, exclusive_strategy=strategies, rule=rule, classes=classes,
                            rule_classes=rule_classes, weak=weak_targets)


PRIOR_PRECISION = 0.5
"""A source nobody measured yet: the mean of a uniform prior on its precision (Beta(1, 1)), not a tuned number."""


def _trust_lookup() -> tuple[dict[int, float], float | None, dict[tuple[str, int], float], dict[str, float]]:
    """Return the measured precisions: per rule, of all rules, per (feed source, feed category), per feed source."""
    rules, pooled, feeds, sources = {}, None, {}, {}
    for kind, rule_id, source, category_id, precision in SourceTrust.objects.exclude(precision=None).values_list(
            "kind", "rule_id", "source", "category_id", "precision"):
        if kind == TrustKind.RULE:
            rules[rule_id] = precision
        elif kind == TrustKind.RULES:
            pooled = precision
        elif kind == TrustKind.FEED:
            feeds[(source, category_id)] = precision
        else:
            sources[source] = precision
    return rules, pooled, feeds, sources


def weak_targets_read(*, exclude: Iterable[int] = ()) -> dict[int, tuple[int, float, str]]:
    """Return dev product id → (exclusive category id, weight, "rule" | "feed") from the legacy system.

    Rules count when the exclusive categories they name for the product are exactly one; the weight is the most
    precise such rule's measured precision. The feed counts when its category is exclusive, weighted by the
    feed category's (else the source's) precision. Unmeasured sources weigh PRIOR_PRECISION. Products in
    `exclude` (those with a human label) get none.
    """
    excluded = set(exclude)
    rules, pooled, feeds, sources = _trust_lookup()
    exclusive = set(Category.objects.filter(is_exclusive=True).values_list("id", flat=True))
    by_product: dict[int, dict[int, float]] = {}
    dev = Product.objects.filter(split=Split.DEV)
    for product_id, category_id, rule_id in RuleLabel.objects.filter(product__in=dev).values_list(
            "product_id", "category_id", "rule_id").iterator(chunk_size=20000):
        if category_id in exclusive and product_id not in excluded:
            named = by_product.setdefault(product_id, {})
            named[category_id] = max(named.get(category_id, 0.0), rules.get(rule_id, pooled or PRIOR_PRECISION))
    weak = {product_id: (*max(named.items(), key=lambda item: item[1]), "rule")
            for product_id, named in by_product.items() if len(named) == 1}
    for product_id, source, category_id in dev.filter(feed_category__is_exclusive=True).values_list(
            "id", "source", "feed_category_id").iterator(chunk_size=20000):
        if product_id in excluded:
            continue
        weight = feeds.get((source, category_id), sources.get(source, PRIOR_PRECISION))
        if product_id not in weak or weight > weak[product_id][1]:
            weak[product_id] = (category_id, weight, "feed")
    return weak


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


def _exclusive_target(product_id: int, targets: CatalogueTargets, weak: bool) -> tuple[int | None, float]:
    if product_id in targets.exclusive:
        return targets.exclusive[product_id], 1.0
    if weak and product_id in targets.weak:
        category_id, weight, _ = targets.weak[product_id]
        return category_id, weight
    return None, 0.0


def labelled_set_build(*, rows: Sequence[dict], targets: CatalogueTargets, objectives: Sequence[str],
                       image_model_version: str, image: bool, weak: bool = False) -> LabelledSet:
    """Return the products of `rows` that have a target for one of `objectives`, with features and targets.

    With `weak`, products without a human label may take their weak exclusive target (training rows only: the
    test set is judged on human labels).
    """
    wanted = [row for row in rows
              if ("exclusive" in objectives and (row["id"] in targets.exclusive or (weak and row["id"] in targets.weak)))
              or ("rule" in objectives and row["id"] in targets.rule)]
    class_index = {category_id: index for index, category_id in enumerate(targets.classes)}
    rule_index = {category_id: index for index, category_id in enumerate(targets.rule_classes)}
    chosen = [_exclusive_target(row["id"], targets, weak and "exclusive" in objectives) for row in wanted]
    exclusive = np.array([class_index[category_id] if category_id is not None else -1 for category_id, _ in chosen],
                         dtype=np.int64)
    weights = np.array([weight for _, weight in chosen], dtype=np.float32)
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
                        rule_known=rule_known, rule_classes=[str(c) for c in targets.rule_classes],
                        exclusive_weight=weights),
        human=np.array([row["id"] in targets.exclusive for row in wanted], dtype=bool),
    )


def dev_test_rows() -> tuple[list[dict], list[dict]]:
    """Return (dev rows, test rows) of the catalogue."""
    rows = product_rows()
    return [row for row in rows if row["split"] == Split.DEV], [row for row in rows if row["split"] == Split.TEST]
