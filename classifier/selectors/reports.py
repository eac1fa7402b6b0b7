"""Reads of one run's metric reports: headline and per-level metrics, per-class rows, most confused pairs.

Reports are the JSON the pipeline stores on `TrainRun.metrics` ({"ground_truth": REPORT, "rule_test": REPORT});
category ids inside them are resolved to nodes in one query per page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from classifier.models import ModelVersion, TrainRun
from classifier.selectors.common import CategoryRef, category_lookup, category_ref, json_at, level_sort_key, number
from labelapp.catalogue.models import Category

REPORTS = (("ground_truth", "Ground truth (hand-labelled test products)"),
           ("rule_test", "Rule test set (test products the legacy rules label)"))
EXCLUSIVE_METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("weighted_f1", "weighted F1"),
                     ("top3_accuracy", "top-3 accuracy"), ("top5_accuracy", "top-5 accuracy"))
RULE_METRICS = (("micro_f1", "micro F1"), ("macro_f1", "macro F1"))
PER_CLASS_SORTS = ("f1", "-f1", "support", "-support", "precision", "-precision", "recall", "-recall", "category")


@dataclass(frozen=True)
class PerClassRow:
    category: CategoryRef
    precision: float | None
    recall: float | None
    f1: float | None
    support: float | None
    threshold: float | None = None


@dataclass(frozen=True)
class ConfusedPair:
    true: CategoryRef
    predicted: CategoryRef
    count: int


@dataclass
class HeadSection:
    """The exclusive or the rule head's part of one report."""

    n: Any
    headline: list[tuple[str, float | None]]
    level_columns: list[str]
    levels: list[tuple[str, list[float | None]]]
    per_class: list[PerClassRow]


@dataclass
class Report:
    key: str
    title: str
    exclusive: HeadSection | None
    rule: HeadSection | None
    confused_pairs: list[ConfusedPair] = field(default_factory=list)


def _report_category_ids(report: dict) -> set:
    ids = set()
    for head in ("exclusive", "rule"):
        for row in json_at(report, f"{head}.per_class") or []:
            if isinstance(row, dict):
                ids.add(row.get("category"))
    for pair in json_at(report, "exclusive.confused_pairs") or []:
        if isinstance(pair, (list, tuple)) and len(pair) >= 2:
            ids.update(pair[:2])
    return ids


def _per_class_rows(rows: Any, lookup: dict[int, Category], sort: str) -> list[PerClassRow]:
    parsed = [PerClassRow(category=category_ref(row.get("category"), lookup), precision=number(row.get("precision")),
                          recall=number(row.get("recall")), f1=number(row.get("f1")),
                          support=number(row.get("support")), threshold=number(row.get("threshold")))
              for row in (rows if isinstance(rows, list) else []) if isinstance(row, dict)]
    if sort == "category":
        return sorted(parsed, key=lambda r: r.category.full_path)
    key, reverse = sort.lstrip("-"), sort.startswith("-")
    present = [r for r in parsed if getattr(r, key) is not None]
    missing = [r for r in parsed if getattr(r, key) is None]
    present.sort(key=lambda r: (getattr(r, key), r.category.full_path), reverse=reverse)
    return present + sorted(missing, key=lambda r: r.category.full_path)


def _head_section(head: Any, metric_names: tuple, lookup: dict[int, Category], sort: str) -> HeadSection | None:
    if not isinstance(head, dict):
        return None
    levels = head.get("levels") if isinstance(head.get("levels"), dict) else {}
    return HeadSection(
        n=head.get("n"),
        headline=[(label, number(head.get(key))) for key, label in metric_names],
        level_columns=[label for _, label in metric_names],
        levels=[(str(level), [number((levels[level] or {}).get(key)) if isinstance(levels[level], dict) else None
                              for key, _ in metric_names])
                for level in sorted(levels, key=level_sort_key)],
        per_class=_per_class_rows(head.get("per_class"), lookup, sort),
    )


def _confused_pairs(report: Any, lookup: dict[int, Category], limit: int) -> list[ConfusedPair]:
    pairs = []
    for pair in json_at(report, "exclusive.confused_pairs") or []:
        if isinstance(pair, (list, tuple)) and len(pair) >= 3 and number(pair[2]) is not None:
            pairs.append(ConfusedPair(true=category_ref(pair[0], lookup), predicted=category_ref(pair[1], lookup),
                                      count=int(pair[2])))
    return sorted(pairs, key=lambda p: -p.count)[:limit]


def run_reports(run: TrainRun, *, sort: str = "-support", confused_limit: int = 15) -> list[Report]:
    """Return the run's metric reports (ground truth first), with category ids resolved and per-class rows sorted."""
    sort = sort if sort in PER_CLASS_SORTS else "-support"
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    present = [(key, title, metrics[key]) for key, title in REPORTS if isinstance(metrics.get(key), dict)]
    lookup = category_lookup(ids={i for _, _, report in present for i in _report_category_ids(report)})
    return [Report(key=key, title=title,
                   exclusive=_head_section(report.get("exclusive"), EXCLUSIVE_METRICS, lookup, sort),
                   rule=_head_section(report.get("rule"), RULE_METRICS, lookup, sort),
                   confused_pairs=_confused_pairs(report, lookup, confused_limit))
            for key, title, report in present]


def model_version_confused_pairs(version: ModelVersion, *, limit: int = 15) -> tuple[str, list[ConfusedPair]]:
    """Return (report key, most confused pairs) from the version's train run: ground truth, else the rule test set."""
    metrics = version.train_run.metrics if isinstance(version.train_run.metrics, dict) else {}
    for key, _ in REPORTS:
        report = metrics.get(key)
        if isinstance(report, dict) and json_at(report, "exclusive.confused_pairs"):
            return key, _confused_pairs(report, category_lookup(ids=_report_category_ids(report)), limit)
    return "", []
