"""How far each source of a category can be trusted, measured on the human labels that exist.

A legacy rule, the rules as a whole, a feed source and each of its feed categories get a SourceTrust row:
how many labelled dev-split products the source named a category for, how many it named right, the 95 %
Wilson interval, and the precision arbitration uses (services.product_categories). The test split is left
out on purpose: it is where the catalogue's accuracy is measured, so estimates never see those answers.

Evidence: the current labels of dev products. Once at least MIN_UNBIASED_LABELS of them were drawn at random
(a round's random share, or imported ground truth), only those count: labels that uncertainty sampling chose
are the hard products, on which every source looks worse than it is. Feed rows never count labels imported
from the feed itself (strategy "import"): they agree with the feed by construction.

Small counts are shrunk towards the parent's rate (a rule towards all rules, a feed category towards its
source) as if the parent had contributed SHRINK_LABELS labels — Beta(1, 1) at the top of the tree. A kind of
source with no labelled product at all stays unmeasured (precision None): arbitration then keeps the order
that held before anything was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db import connection, transaction

from labelapp.catalogue.models import (
    Label,
    LabelStrategy,
    LegacyRule,
    Product,
    RuleLabel,
    SourceTrust,
    Split,
    TrustKind,
)
from labelapp.catalogue.services.product_categories import products_category_refresh

MIN_UNBIASED_LABELS = 30
SHRINK_LABELS = 10
UNBIASED_STRATEGIES = (LabelStrategy.RANDOM.value, LabelStrategy.IMPORT.value)
WILSON_Z = 1.96


def wilson_interval(correct: int, labelled: int, *, z: float = WILSON_Z) -> tuple[float | None, float | None]:
    """Return the Wilson score interval (low, high) of a rate correct/labelled; (None, None) without labels."""
    if labelled <= 0:
        return None, None
    rate = correct / labelled
    denominator = 1 + z * z / labelled
    centre = (rate + z * z / (2 * labelled)) / denominator
    spread = z * math.sqrt(rate * (1 - rate) / labelled + z * z / (4 * labelled * labelled)) / denominator
    return max(0.0, centre - spread), min(1.0, centre + spread)


def shrunk_precision(correct: int, labelled: int, parent: float | None) -> float | None:
    """Return correct/labelled shrunk towards `parent` (worth SHRINK_LABELS labels); None when nothing is known."""
    if parent is None:
        return None if labelled <= 0 else (correct + 1) / (labelled + 2)
    return (correct + SHRINK_LABELS * parent) / (labelled + SHRINK_LABELS)


@dataclass(frozen=True)
class TrustSummary:
    evidence: str
    labels: int
    rules: int
    feeds: int


def _evidence_cte() -> tuple[str, str]:
    """Return (SQL of a `current` CTE: dev products' current labels, evidence name) for this catalogue's labels."""
    label, product = Label._meta.db_table, Product._meta.db_table
    current = f"""
        current AS (
            SELECT DISTINCT ON (l.product_id) l.product_id, l.category_id, l.strategy
            FROM {label} AS l JOIN {product} AS p ON p.id = l.product_id AND p.split = %(dev)s
            WHERE NOT l.undone AND l.category_id IS NOT NULL
            ORDER BY l.product_id, l.created_at DESC, l.id DESC)"""
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {current} SELECT count(*) FILTER (WHERE strategy = ANY(%(unbiased)s)) FROM current",
                       {"dev": Split.DEV.value, "unbiased": list(UNBIASED_STRATEGIES)})
        unbiased = cursor.fetchone()[0]
    if unbiased >= MIN_UNBIASED_LABELS:
        return current + ", evidence AS (SELECT * FROM current WHERE strategy = ANY(%(unbiased)s))", "unbiased"
    return current + ", evidence AS (SELECT * FROM current)", "all"


def _rule_counts(evidence_sql: str) -> list[tuple[int, int, int, int, int]]:
    """Return (rule id, category id, covered, labelled, correct) per rule that fired on any product."""
    rule_label = RuleLabel._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH {evidence_sql}
                SELECT r.rule_id, min(r.category_id), count(*), count(e.product_id),
                       count(*) FILTER (WHERE e.category_id = r.category_id)
                FROM {rule_label} AS r LEFT JOIN evidence AS e ON e.product_id = r.product_id
                GROUP BY r.rule_id""",
            {"dev": Split.DEV.value, "unbiased": list(UNBIASED_STRATEGIES)})
        return cursor.fetchall()


def _feed_counts(evidence_sql: str) -> list[tuple[str, int, int, int, int]]:
    """Return (source, feed category id, covered, labelled, correct) per feed category of each source."""
    product = Product._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH {evidence_sql}
                SELECT p.source, p.feed_category_id, count(*), count(e.product_id),
                       count(*) FILTER (WHERE e.category_id = p.feed_category_id)
                FROM {product} AS p
                LEFT JOIN evidence AS e ON e.product_id = p.id AND e.strategy <> %(imported)s
                WHERE p.feed_category_id IS NOT NULL
                GROUP BY p.source, p.feed_category_id""",
            {"dev": Split.DEV.value, "unbiased": list(UNBIASED_STRATEGIES), "imported": LabelStrategy.IMPORT.value})
        return cursor.fetchall()


def _row(evidence: str, parent: float | None, covered: int, labelled: int, correct: int, **key) -> SourceTrust:
    low, high = wilson_interval(correct, labelled)
    return SourceTrust(covered=covered, labelled=labelled, correct=correct, low=low, high=high, evidence=evidence,
                       precision=shrunk_precision(correct, labelled, parent), **key)


def _rule_rows(evidence: str, counts: list[tuple[int, int, int, int, int]]) -> list[SourceTrust]:
    totals = [sum(row[i] for row in counts) for i in (2, 3, 4)]
    pooled = _row(evidence, None, *totals, kind=TrustKind.RULES)
    active = set(LegacyRule.objects.filter(active=True).values_list("id", flat=True))
    return [pooled] + [_row(evidence, pooled.precision, covered, labelled, correct, kind=TrustKind.RULE,
                            rule_id=rule_id, category_id=category_id)
                       for rule_id, category_id, covered, labelled, correct in counts if rule_id in active]


def _feed_rows(evidence: str, counts: list[tuple[str, int, int, int, int]]) -> list[SourceTrust]:
    rows = []
    for source in sorted({row[0] for row in counts}):
        mine = [row for row in counts if row[0] == source]
        totals = [sum(row[i] for row in mine) for i in (2, 3, 4)]
        parent = _row(evidence, None, *totals, kind=TrustKind.FEED_SOURCE, source=source)
        rows.append(parent)
        rows += [_row(evidence, parent.precision, covered, labelled, correct, kind=TrustKind.FEED, source=source,
                      category_id=category_id) for _, category_id, covered, labelled, correct in mine]
    return rows


def trust_refresh() -> TrustSummary:
    """Rebuild every SourceTrust row from the current labels, rule labels and feed categories (one transaction).

    Arbitration reads these rows: call `products_category_refresh()` afterwards to apply them
    (`trust_and_categories_refresh` does both).
    """
    evidence_sql, evidence = _evidence_cte()
    rules = _rule_rows(evidence, _rule_counts(evidence_sql))
    feeds = _feed_rows(evidence, _feed_counts(evidence_sql))
    with transaction.atomic():
        SourceTrust.objects.all().delete()
        SourceTrust.objects.bulk_create(rules + feeds, batch_size=2000)
    return TrustSummary(evidence=evidence, labels=rules[0].labelled if rules else 0, rules=len(rules) - 1,
                        feeds=len(feeds))


def trust_and_categories_refresh() -> TrustSummary:
    """Re-measure every source, then re-decide every product's category with the new estimates."""
    summary = trust_refresh()
    products_category_refresh()
    return summary
