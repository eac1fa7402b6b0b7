"""Reads for the trust page: how precise each source of a category is measured, and how reliable the model is."""

from __future__ import annotations

from dataclasses import dataclass

from classifier.models import ModelVersion, TrainRun
from labelapp.catalogue.models import SourceTrust, TrustKind


@dataclass(frozen=True)
class TrustOverview:
    rules: list[SourceTrust]
    rules_pooled: SourceTrust | None
    feeds: list[tuple[SourceTrust, list[SourceTrust]]]  # per source: its row, then its feed categories
    evidence: str
    active: ModelVersion | None
    reliability: list[dict]
    reliability_before: list[dict]
    calibration: dict


def trust_overview(*, feed_categories: int = 25) -> TrustOverview:
    """Return every measured rule (most covered first), the feeds with their most common feed categories, and the
    active model's calibration and reliability bins on the test split's labels."""
    rows = list(SourceTrust.objects.select_related("rule", "rule__category", "category")
                .order_by("-covered", "kind", "source", "rule_id", "category_id"))
    rules = [row for row in rows if row.kind == TrustKind.RULE]
    pooled = next((row for row in rows if row.kind == TrustKind.RULES), None)
    sources = [row for row in rows if row.kind == TrustKind.FEED_SOURCE]
    feeds = [(source, [row for row in rows if row.kind == TrustKind.FEED and row.source == source.source]
              [:feed_categories]) for source in sources]
    active = ModelVersion.objects.filter(is_active=True).first()
    calibration = {}
    if active is not None:
        metrics = TrainRun.objects.filter(id=active.train_run_id).values_list("metrics", flat=True).first() or {}
        calibration = metrics.get("calibration") or {}
    test = calibration.get("test") or {}
    return TrustOverview(rules=rules, rules_pooled=pooled, feeds=feeds, evidence=rows[0].evidence if rows else "",
                         active=active, reliability=test.get("reliability") or [],
                         reliability_before=test.get("reliability_before") or [], calibration=calibration)
