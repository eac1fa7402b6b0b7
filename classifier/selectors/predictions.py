"""Reads of predictions: the reviewers' predictions browser (filters, keyset pages) and predictions for products."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery

from classifier.models import ModelVersion, Prediction
from classifier.selectors.common import CategoryRef, categories_by_id, category_lookup, category_ref, number
from classifier.selectors.versions import model_version_active
from labelapp.catalogue.models import Category, Label, Product, RuleLabel


class Agreement:
    ANY = ""
    AGREES = "agrees"
    DISAGREES = "disagrees"
    CHOICES = (ANY, AGREES, DISAGREES)


@dataclass(frozen=True)
class PredictionFilters:
    """What the predictions browser may be narrowed by; every field but the version is optional.

    `below`: confidence < below. `rules`: the top-1 category is (agrees) or is not (disagrees) among the product's
    rule-label categories, for products that have rule labels. `label`: the product's current human label (the
    newest not undone) names
    (agrees) or does not name (disagrees; "none fits" counts as disagreeing) the top-1 category. `category_id`:
    the top-1 category lies in that subtree. `q`: text in the product title.
    """

    version_id: int
    below: float | None = None
    rules: str = Agreement.ANY
    label: str = Agreement.ANY
    category_id: int | None = None
    q: str = ""
    descending: bool = False


def _current_labels() -> QuerySet[Label]:
    # An undone label is history, not a judgement: the current label is the newest one not undone.
    return Label.objects.filter(product_id=OuterRef("product_id"), undone=False)


def _newest_label_category() -> Subquery:
    newest = _current_labels().order_by("-created_at", "-id")
    return Subquery(newest.values("category_id")[:1])


def prediction_list(*, filters: PredictionFilters) -> QuerySet[Prediction]:
    """Return the version's predictions matching the filters (unordered, nothing joined: cheap to count)."""
    qs = Prediction.objects.filter(model_version_id=filters.version_id)
    if filters.below is not None:
        qs = qs.filter(confidence__lt=filters.below)
    if filters.category_id is not None:
        subtree = Category.objects.filter(lineage__contains=[filters.category_id]).values("id")
        qs = qs.filter(category_id__in=subtree)
    if filters.q:
        qs = qs.filter(product__title__icontains=filters.q)
    if filters.rules in (Agreement.AGREES, Agreement.DISAGREES):
        rule_has_top1 = Exists(RuleLabel.objects.filter(product_id=OuterRef("product_id"),
                                                        category_id=OuterRef("category_id")))
        if filters.rules == Agreement.AGREES:
            qs = qs.filter(rule_has_top1)
        else:
            has_rules = Exists(RuleLabel.objects.filter(product_id=OuterRef("product_id")))
            qs = qs.filter(has_rules, ~rule_has_top1, category__isnull=False)
    if filters.label in (Agreement.AGREES, Agreement.DISAGREES):
        qs = qs.alias(label_category=_newest_label_category())
        if filters.label == Agreement.AGREES:
            qs = qs.filter(label_category=F("category_id"))
        else:
            # A NULL newest label ("none fits") disagrees with any prediction; `<>` alone would drop it.
            labelled = Exists(_current_labels())
            qs = qs.filter(labelled, category__isnull=False).filter(
                Q(label_category__isnull=True) | Q(label_category__lt=F("category_id"))
                | Q(label_category__gt=F("category_id")))
    return qs


def prediction_count_capped(qs: QuerySet[Prediction], *, cap: int = 10_000) -> tuple[int, bool]:
    """Return (count, capped): counts at most cap + 1 rows, so a count stays cheap on a huge catalogue."""
    count = qs.order_by()[: cap + 1].count()
    return min(count, cap), count > cap


@dataclass(frozen=True)
class Cursor:
    """Keyset position: the last row shown (confidence, id); confidence None sorts last in either direction."""

    confidence: float | None
    id: int

    def encode(self) -> str:
        return f"{'null' if self.confidence is None else repr(self.confidence)}_{self.id}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        try:
            confidence, _, pk = (text or "").rpartition("_")
            return cls(confidence=None if confidence == "null" else float(confidence), id=int(pk))
        except ValueError:
            return None


@dataclass(frozen=True)
class PredictionRow:
    prediction: Prediction
    product: Product
    top: list[tuple[CategoryRef, float | None]]
    rule_categories: list[CategoryRef]
    labelled: bool
    label_category: CategoryRef | None

    @property
    def disagrees_rules(self) -> bool:
        return bool(self.rule_categories) and self.prediction.category_id is not None and \
            self.prediction.category_id not in {c.id for c in self.rule_categories}

    @property
    def disagrees_label(self) -> bool:
        return self.labelled and self.prediction.category_id is not None and \
            (self.label_category is None or self.label_category.id != self.prediction.category_id)


@dataclass(frozen=True)
class PredictionPage:
    rows: list[PredictionRow]
    next_cursor: Cursor | None


def prediction_page(*, filters: PredictionFilters, after: Cursor | None = None, size: int = 50) -> PredictionPage:
    """Return one keyset page of predictions, lowest confidence first (or highest with `descending`).

    Keyset, not OFFSET: page 500 of 100k predictions costs what page 1 does, walking the (version, confidence) index.
    """
    qs = prediction_list(filters=filters)
    if after is not None:
        if after.confidence is None:
            qs = qs.filter(confidence__isnull=True, id__gt=after.id)
        else:
            beyond = Q(confidence__lt=after.confidence) if filters.descending else Q(confidence__gt=after.confidence)
            qs = qs.filter(beyond | Q(confidence=after.confidence, id__gt=after.id) | Q(confidence__isnull=True))
    order = F("confidence").desc(nulls_last=True) if filters.descending else F("confidence").asc(nulls_last=True)
    labelled = Exists(_current_labels())
    predictions = list(qs.select_related("product").annotate(label_category_id=_newest_label_category(),
                                                             labelled=labelled)
                       .order_by(order, "id")[: size + 1])
    has_next = len(predictions) > size
    predictions = predictions[:size]

    product_ids = [p.product_id for p in predictions]
    rules: dict[int, list[int]] = defaultdict(list)
    for product_id, category_id in (RuleLabel.objects.filter(product_id__in=product_ids)
                                    .values_list("product_id", "category_id").distinct().order_by("category_id")):
        rules[product_id].append(category_id)
    top_ids = {entry[0] for p in predictions for entry in _top_entries(p.top_k, 3)}
    lookup = category_lookup(ids=top_ids | {c for ids in rules.values() for c in ids}
                             | {p.label_category_id for p in predictions if p.label_category_id}
                             | {p.category_id for p in predictions if p.category_id})
    rows = []
    for p in predictions:
        top = [(category_ref(cid, lookup), prob) for cid, prob in _top_entries(p.top_k, 3)]
        if not top and p.category_id:
            top = [(category_ref(p.category_id, lookup), number(p.confidence))]
        rows.append(PredictionRow(
            prediction=p, product=p.product, top=top, rule_categories=[category_ref(c, lookup) for c in rules[p.product_id]],
            labelled=p.labelled, label_category=category_ref(p.label_category_id, lookup) if p.label_category_id else None))
    last = predictions[-1] if predictions else None
    return PredictionPage(rows=rows, next_cursor=Cursor(confidence=last.confidence, id=last.id)
                          if has_next and last else None)


def _top_entries(top_k: Any, limit: int) -> list[tuple[int, float | None]]:
    entries = []
    for entry in top_k if isinstance(top_k, list) else []:
        if isinstance(entry, (list, tuple)) and len(entry) >= 2 and isinstance(entry[0], int):
            entries.append((entry[0], number(entry[1])))
    return entries[:limit]


def predictions_for_products(*, product_ids: Iterable[int], version: ModelVersion | None = None
                             ) -> dict[int, Prediction]:
    """Return product id → the active (or given) version's prediction, for the products that have one."""
    version = version or model_version_active()
    if version is None:
        return {}
    return {prediction.product_id: prediction
            for prediction in Prediction.objects.filter(model_version=version, product_id__in=list(product_ids))}


def prediction_current(*, product_id: int) -> Prediction | None:
    """Return the active version's prediction for one product."""
    return predictions_for_products(product_ids=[product_id]).get(product_id)


def prediction_categories(*, predictions: Iterable[Prediction]) -> dict[int, Category]:
    """Return id → Category of every category the predictions name (top-k and rule-head positives)."""
    ids = {category_id for prediction in predictions for category_id, _ in prediction.top_k}
    ids |= {category_id for prediction in predictions for category_id in prediction.rule_positives}
    return categories_by_id(category_ids=ids)
