"""Reads of labelling rounds, their queues and the labelling cards."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from classifier.models import Prediction, TrainRun, TrainStatus
from labelapp.catalogue.models import (
    Category,
    ImportRun,
    ImportStatus,
    Label,
    Product,
    RuleLabel,
    SourceTrust,
    TrustKind,
)
from labelapp.workflow.models import LabelContext, LabellingRound, QueueItem, QueueItemStatus, RoundStatus


def labelling_round_open() -> LabellingRound | None:
    """Return the open labelling round, if any (at most one is open)."""
    return LabellingRound.objects.filter(status=RoundStatus.OPEN).first()


def labelling_round_list() -> QuerySet[LabellingRound]:
    """Return labelling rounds, newest first, with their train run and model version."""
    return LabellingRound.objects.select_related("train_run", "model_version", "created_by").order_by("-number")


@dataclass(frozen=True)
class StrategyProgress:
    strategy: str
    total: int
    done: int
    flagged: int


@dataclass(frozen=True)
class RoundProgress:
    """Where a round stands: items by status, labels per strategy, and its retraining run (when closing)."""

    round: LabellingRound
    total: int
    pending: int
    leased: int
    done: int
    flagged: int
    strategies: tuple[StrategyProgress, ...]

    @property
    def percent_done(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def train_run(self):
        return self.round.train_run


def labelling_round_progress(*, round: LabellingRound) -> RoundProgress:
    """Return the round's progress in one query (items whose lease expired count as pending)."""
    now = timezone.now()
    rows = (QueueItem.objects.filter(round=round).values("strategy")
            .annotate(total=Count("id"), done=Count("id", filter=Q(status=QueueItemStatus.DONE)),
                      leased=Count("id", filter=Q(status=QueueItemStatus.LEASED, lease_expires_at__gt=now)),
                      flagged=Count("id", filter=Q(flagged=True)))
            .order_by("strategy"))
    strategies = tuple(StrategyProgress(strategy=row["strategy"], total=row["total"], done=row["done"],
                                        flagged=row["flagged"]) for row in rows)
    total = sum(row["total"] for row in rows)
    done = sum(row["done"] for row in rows)
    leased = sum(row["leased"] for row in rows)
    return RoundProgress(round=round, total=total, done=done, leased=leased, pending=total - done - leased,
                         flagged=sum(row["flagged"] for row in rows), strategies=strategies)


def labelling_round_counts(*, round: LabellingRound, user) -> dict[str, int]:
    """Return the labeller's header counts in one query: items, items done, and this user's labels in the round.

    The item total comes from the fill's record when it has one.
    """
    items, labels, contexts = QueueItem._meta.db_table, Label._meta.db_table, LabelContext._meta.db_table
    total = (round.options or {}).get("fill", {}).get("items")
    total_sql = "%s" if total is not None else f"(SELECT count(*) FROM {items} WHERE round_id = %s)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT (SELECT count(*) FROM {items} WHERE round_id = %s AND status = %s),
                       (SELECT count(*) FROM {labels} AS l JOIN {contexts} AS x ON x.label_id = l.id
                        WHERE x.round_id = %s AND l.labeller_id = %s AND NOT l.undone),
                       {total_sql}""",
            [round.pk, QueueItemStatus.DONE, round.pk, user.pk, total if total is not None else round.pk])
        done, mine, total = cursor.fetchone()
    return {"total": int(total), "done": done, "mine": mine}


@dataclass(frozen=True)
class SuggestionSource:
    """One source that names a suggested category: the model (its calibrated probability), a legacy rule or the
    feed (their measured precision; None: not measured yet)."""

    source: str
    estimate: float | None


@dataclass(frozen=True)
class Suggestion:
    key: int
    category_id: int
    path: str
    sources: tuple[SuggestionSource, ...]

    @property
    def estimate(self) -> float | None:
        known = [source.estimate for source in self.sources if source.estimate is not None]
        return max(known) if known else None

    @property
    def probability(self) -> float:
        """The model's probability for this category (0 when only a legacy source names it)."""
        return next((source.estimate or 0.0 for source in self.sources if source.source == "model"), 0.0)


@dataclass(frozen=True)
class QueueCard:
    """What a labeller sees of one queue item: the product, its rule labels and the merged suggestions."""

    item: QueueItem
    product: Product
    rule_paths: tuple[str, ...]
    suggestions: tuple[Suggestion, ...]
    token: str


MODEL_SUGGESTIONS = 5
SUGGESTIONS = 9  # keys 1–9


def queue_item_token(item: QueueItem) -> str:
    """Return the idempotency token a card is submitted with: the item id and the label it was shown after."""
    return f"{item.pk}.{item.label_id or 0}"


def _suggestion_rows_sql() -> str:
    category, rule_label, trust, product = (model._meta.db_table for model in (Category, RuleLabel, SourceTrust,
                                                                                Product))
    # top_k is [[category id, probability], …] best first: unnest its first five and join their paths.
    return f"""
        SELECT 'rule', r.product_id, c.id, c.full_path, c.is_exclusive, max(s.precision), 0::bigint
        FROM {rule_label} AS r JOIN {category} AS c ON c.id = r.category_id
        LEFT JOIN {trust} AS s ON s.kind = %(rule)s AND s.rule_id = r.rule_id
        WHERE r.product_id = ANY(%(ids)s) GROUP BY r.product_id, c.id, c.full_path, c.is_exclusive
        UNION ALL
        SELECT 'feed', p.id, c.id, c.full_path, c.is_exclusive, COALESCE(fc.precision, fs.precision), 0::bigint
        FROM {product} AS p JOIN {category} AS c ON c.id = p.feed_category_id
        LEFT JOIN {trust} AS fc ON fc.kind = %(feed)s AND fc.source = p.source AND fc.category_id = c.id
        LEFT JOIN {trust} AS fs ON fs.kind = %(feed_source)s AND fs.source = p.source
        WHERE p.id = ANY(%(ids)s)
        UNION ALL
        SELECT 'model', p.product_id, c.id, c.full_path, c.is_exclusive, (t.entry ->> 1)::float8, t.rank
        FROM {Prediction._meta.db_table} AS p
        CROSS JOIN LATERAL jsonb_array_elements(p.top_k) WITH ORDINALITY AS t(entry, rank)
        JOIN {category} AS c ON c.id = (t.entry ->> 0)::bigint
        WHERE p.model_version_id = %(version)s AND p.product_id = ANY(%(ids)s) AND t.rank <= %(top)s
        ORDER BY 2, 7, 4"""


def _suggestions_merge(rows: list[tuple]) -> list[Suggestion]:
    """Merge one product's (source, category, path, estimate) rows: one suggestion per category, best first.

    Best first: the highest estimate among the category's sources; categories that only unmeasured sources name
    come after the measured ones, in source order (rules, then the feed).
    """
    merged: dict[int, tuple[str, list[SuggestionSource]]] = {}
    for source, category_id, path, estimate in rows:
        merged.setdefault(category_id, (path, []))[1].append(SuggestionSource(source=source, estimate=estimate))
    ranked = sorted(merged.items(), key=lambda item: -max(
        (s.estimate for s in item[1][1] if s.estimate is not None), default=-1.0))
    return [Suggestion(key=index + 1, category_id=category_id, path=path, sources=tuple(sources))
            for index, (category_id, (path, sources)) in enumerate(ranked[:SUGGESTIONS])]


def queue_cards(*, items: list[QueueItem], model_version_id: int | None) -> list[QueueCard]:
    """Return the cards of queue items (with product loaded): rule-label paths and suggestions in one query.

    Suggestions merge what every source says about the product, each marked with its source and estimate: the
    top-5 exclusive classes of `model_version_id`'s prediction (calibrated probabilities; none on a cold start),
    the exclusive categories its legacy rules name and its feed category (their measured precision), so the
    right answer is one key away whenever any source has it. One round trip: the labelling page pays for it on
    each product.
    """
    product_ids = [item.product_id for item in items]
    rule_paths: dict[int, list[str]] = {}
    rows: dict[int, list[tuple]] = {}
    if product_ids:
        with connection.cursor() as cursor:
            cursor.execute(_suggestion_rows_sql(), {
                "ids": product_ids, "version": model_version_id, "top": MODEL_SUGGESTIONS,
                "rule": TrustKind.RULE.value, "feed": TrustKind.FEED.value,
                "feed_source": TrustKind.FEED_SOURCE.value})
            for source, product_id, category_id, path, exclusive, estimate, _ in cursor.fetchall():
                if source == "rule":
                    rule_paths.setdefault(product_id, []).append(path)
                if exclusive:  # a label must name an exclusive category
                    rows.setdefault(product_id, []).append((source, category_id, path, estimate))
    return [QueueCard(item=item, product=item.product, rule_paths=tuple(sorted(rule_paths.get(item.product_id, ()))),
                      suggestions=tuple(_suggestions_merge(rows.get(item.product_id, []))),
                      token=queue_item_token(item))
            for item in items]


def operations_failures(*, limit: int = 5) -> dict[str, list]:
    """Return the most recent failed train runs and imports (newest first), for the operations page."""
    return {
        "train_runs": list(TrainRun.objects.filter(status=TrainStatus.FAILED).order_by("-created_at", "-id")[:limit]),
        "imports": list(ImportRun.objects.filter(status=ImportStatus.FAILED).order_by("-created_at", "-id")[:limit]),
    }
