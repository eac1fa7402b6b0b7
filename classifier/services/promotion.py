"""Promotion and rollback: which model version serves, the guard that keeps a worse one out, and the catalogue's
copy of the active version's categories.

The guard, by default on every promotion. On the test split's human labels (the ground truth), a new version
must not be worse than the active one beyond noise, and the catalogue must not get worse:

1. The two versions' top-1 predictions are compared product by product with McNemar's exact test (one-sided,
   GUARD_ALPHA): with b products only the active version gets right and c only the new one does, the new
   version is blocked when P(X ≥ b | X ~ Binomial(b + c, ½)) < GUARD_ALPHA.
2. The catalogue's accuracy (each labelled test product decided as if unlabelled: arbitration by evidence, the
   feed left out where the label was imported from it) with the new version's categories must be at least the
   current one: a model never makes the catalogue worse than the sources it replaces.

A version without ground truth to judge it on is promoted (the arbitration still only lets it replace sources
it is measured more precise than). A reviewer can force a blocked version (`model_version_promote(force=True)`,
the run page's "Promote anyway", or the API's activate). The decision and its reason go on the TrainRun.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

from django.db import transaction
from django.utils import timezone

from classifier.models import ModelVersion, Prediction, PromotionOutcome, TrainRun
from labelapp.catalogue.services.product_categories import (
    CatalogueAccuracy,
    catalogue_accuracy_measure,
    products_category_refresh,
    products_model_categories_replace,
)
from labelapp.catalogue.services.trust import trust_refresh

GUARD_ALPHA = 0.05
GUARD_TEST = "McNemar's exact test, one-sided, α = 0.05, on the test split's human labels"


def mcnemar_worse_p(*, only_active_right: int, only_new_right: int) -> float:
    """Return the one-sided exact McNemar p-value that the new version is worse than the active one."""
    n = only_active_right + only_new_right
    if n == 0:
        return 1.0
    return sum(comb(n, k) for k in range(only_active_right, n + 1)) / 2 ** n


@dataclass(frozen=True)
class GuardDecision:
    promote: bool
    reason: str
    details: dict


def _top1(version: ModelVersion | None, product_ids) -> dict[int, tuple[int | None, float | None]]:
    if version is None:
        return {}
    return {pid: (category_id, confidence) for pid, category_id, confidence in Prediction.objects.filter(
        model_version=version, product_id__in=list(product_ids)).values_list("product_id", "category_id", "confidence")}


def _model_rows(version: ModelVersion, predictions: dict) -> list[tuple[int, int | None, float | None]]:
    """(product, category, precision) of a version: its calibrated confidence stands as precision once measured."""
    return [(pid, category_id, confidence if version.precision_measured else None)
            for pid, (category_id, confidence) in predictions.items() if category_id is not None]


def _accuracy_text(measure: CatalogueAccuracy) -> str:
    return f"{measure.correct}/{measure.labelled}"


def promotion_guard(*, version: ModelVersion, active: ModelVersion | None) -> GuardDecision:
    """Decide whether `version` may replace `active` (see the module docstring); measure the catalogue both ways."""
    before = catalogue_accuracy_measure()
    truth = before.truth
    new = _top1(version, truth)
    after = catalogue_accuracy_measure(model_rows=_model_rows(version, new))
    details = {"test": GUARD_TEST, "ground_truth": len(truth),
               "catalogue": {"before": before.accuracy, "after": after.accuracy, "n": after.labelled,
                             "by_source_before": before.by_source, "by_source_after": after.by_source}}
    if not truth:
        return GuardDecision(True, "no human labels on the test split to judge it on: promoted (it can only replace "
                                   "sources it is measured more precise than)", details)
    old = _top1(active, truth)
    if active is not None and old:
        new_right = {pid for pid, (category_id, _) in new.items() if category_id == truth[pid]}
        old_right = {pid for pid, (category_id, _) in old.items() if category_id == truth[pid]}
        b, c = len(old_right - new_right), len(new_right - old_right)
        p = mcnemar_worse_p(only_active_right=b, only_new_right=c)
        details["models"] = {"active": active.name, "active_right": len(old_right), "new_right": len(new_right),
                             "only_active_right": b, "only_new_right": c, "p_worse": p}
        if p < GUARD_ALPHA:
            return GuardDecision(False, f"worse than {active.name} on {len(truth)} ground-truth products: right "
                                        f"{len(new_right)} vs {len(old_right)} (McNemar one-sided p = {p:.3g})", details)
    if after.correct < before.correct:
        return GuardDecision(False, f"the catalogue would get worse: {_accuracy_text(after)} right instead of "
                                    f"{_accuracy_text(before)} on the test split's labelled products", details)
    return GuardDecision(True, f"not worse on {len(truth)} ground-truth products; catalogue "
                               f"{_accuracy_text(before)} → {_accuracy_text(after)} right", details)


def _run_record(version: ModelVersion, *, reason: str, details: dict) -> None:
    run = TrainRun.objects.filter(id=version.train_run_id).only("metrics").first()
    if run is not None:
        TrainRun.objects.filter(id=run.id).update(promotion_reason=reason[:2000],
                                                  metrics={**(run.metrics or {}), "promotion": details})


def model_version_promote(*, version: ModelVersion, max_regression: float | None = None,
                          force: bool = False) -> str:
    """Make `version` the active model if the guard allows it (or `force`); return the promotion outcome.

    Re-measures every source's trust first (labels arrived since the last time), records the decision on the
    version's run, and on promotion hands the version's categories to the catalogue, which re-decides every
    product — in one transaction, under a row lock on the active version so two promotions serialise.
    With `max_regression`, a version whose headline metric is worse than the active version's by more than that
    keeps the active one ("regression").
    """
    with transaction.atomic():
        active = ModelVersion.objects.select_for_update().filter(is_active=True).first()
        if active is not None and active.id == version.id:
            return PromotionOutcome.PROMOTED
        if (not force and max_regression is not None and active is not None and active.headline_value is not None
                and version.headline_metric == active.headline_metric
                and (version.headline_value is None or version.headline_value < active.headline_value - max_regression)):
            return PromotionOutcome.REGRESSION
        trust_refresh()
        decision = promotion_guard(version=version, active=active)
        outcome = PromotionOutcome.PROMOTED if decision.promote else (
            PromotionOutcome.FORCED if force else PromotionOutcome.BLOCKED)
        reason = decision.reason if decision.promote or not force else f"forced by a reviewer: {decision.reason}"
        _run_record(version, reason=reason, details={**decision.details, "outcome": outcome})
        if outcome == PromotionOutcome.BLOCKED:
            products_category_refresh()  # the new trust estimates apply with the active version kept
            return outcome
        ModelVersion.objects.filter(is_active=True).update(is_active=False)
        ModelVersion.objects.filter(id=version.id).update(is_active=True, activated_at=timezone.now())
        version.is_active = True
        model_categories_publish(version=version)
    version.refresh_from_db()
    return outcome


def model_categories_publish(*, version: ModelVersion | None) -> int:
    """Give the catalogue the version's top-1 category per product (none: no active model); return changes.

    Products the version does not predict (a rule-only model) lose their model category, so they fall back to
    the rules or the feed. Every product is re-decided, so fresh trust estimates apply everywhere.
    """
    rows = (Prediction.objects.filter(model_version=version, category__isnull=False)
            .values_list("product_id", "category_id", "confidence") if version is not None else [])
    product_ids, category_ids, confidences = (list(column) for column in zip(*rows)) if rows else ([], [], [])
    measured = version is not None and version.precision_measured
    precisions = list(confidences) if measured else [None] * len(product_ids)
    products_model_categories_replace(product_ids=product_ids, category_ids=category_ids, confidences=confidences,
                                      precisions=precisions, refresh_all=True)
    return len(product_ids)


class PromotionRefused(ValueError):
    """The run has no version that can be promoted (it failed, or its artefact and predictions were pruned)."""


def train_run_promote_forced(*, run: TrainRun, user=None) -> str:
    """Promote a run's version that the guard kept out, on a reviewer's word; return the new outcome."""
    version = ModelVersion.objects.filter(train_run=run).first()
    if version is None or not version.artefact_path or not version.predictions_count:
        raise PromotionRefused(f"run {run.id} has no model version with predictions to promote")
    outcome = model_version_promote(version=version, force=True)
    who = getattr(user, "username", "") or "a reviewer"
    reason = TrainRun.objects.filter(id=run.id).values_list("promotion_reason", flat=True).first() or ""
    TrainRun.objects.filter(id=run.id).update(outcome=outcome,
                                              promotion_reason=reason.replace("a reviewer", who, 1))
    return outcome
