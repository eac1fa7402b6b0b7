"""Reads of learning curves: labels used vs test accuracy of succeeded runs, and simulation CSVs."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db.models.fields.json import KT

from classifier.models import TrainRun, TrainStatus


@dataclass(frozen=True)
class CurvePoint:
    labels: float
    accuracy: float
    run_id: int | None = None
    source: str = ""   # which report the accuracy comes from, or how many repeats were averaged


def learning_curves() -> dict[str, list[CurvePoint]]:
    """Return {setting: points} from succeeded runs: labels used vs ground-truth accuracy (rule test as fallback).

    Reads only the few JSON values it plots (KT = ->>), never the whole metric reports.
    """
    rows = (TrainRun.objects.filter(status=TrainStatus.SUCCEEDED)
            .annotate(labels=KT("data_counts__exclusive_labels"), setting=KT("params__setting"),
                      gt=KT("metrics__ground_truth__exclusive__accuracy"),
                      rule=KT("metrics__rule_test__exclusive__accuracy"))
            .order_by("created_at", "id").values_list("id", "labels", "setting", "gt", "rule"))
    curves: dict[str, list[CurvePoint]] = defaultdict(list)
    for run_id, labels, setting, gt, rule in rows:
        labels_n, accuracy, source = _to_float(labels), _to_float(gt), "ground truth"
        if accuracy is None:
            accuracy, source = _to_float(rule), "rule test set"
        if labels_n is None or accuracy is None:
            continue
        curves[setting or "manual"].append(CurvePoint(labels=labels_n, accuracy=accuracy, run_id=run_id,
                                                      source=source))
    return {name: sorted(points, key=lambda p: (p.labels, p.run_id or 0)) for name, points in sorted(curves.items())}


def _to_float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass
class SimulationFile:
    """One simulation CSV: mean accuracy per (series, labels) over repeats, or why it could not be read."""

    name: str
    rows_used: int = 0
    rows_skipped: int = 0
    repeats: int = 0
    series: dict[str, list[CurvePoint]] = field(default_factory=dict)
    error: str = ""


SIMULATION_REQUIRED = ("strategy", "labels", "accuracy")
SIMULATION_REPEAT_COLUMNS = ("repeat", "seed")  # simulate_active_learning writes one seed per repeat
SIMULATION_MAX_BYTES = 50 * 1024 * 1024


def simulation_curves(*, directory: Path, max_files: int = 12) -> list[SimulationFile]:
    """Return the parsed simulation CSVs in `directory` (newest first); a file that does not parse carries an error.

    Each needs columns strategy, labels, accuracy (repeat or seed optional, others ignored; an `objectives` column,
    when present, is added to the series name). Rows with a non-numeric value are skipped and counted.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    paths = sorted(directory.glob("*.csv"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)[:max_files]
    return [_simulation_file(path) for path in paths]


def _simulation_file(path: Path) -> SimulationFile:
    result = SimulationFile(name=path.name)
    try:
        if path.stat().st_size > SIMULATION_MAX_BYTES:
            result.error = f"larger than {SIMULATION_MAX_BYTES // (1024 * 1024)} MB"
            return result
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
            missing = [c for c in SIMULATION_REQUIRED if c not in columns]
            if missing:
                result.error = f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}" + \
                    (f" (found {', '.join(columns) or 'none'})" if columns else " (empty file)")
                return result
            sums: dict[tuple[str, float], list[float]] = defaultdict(list)
            repeats = set()
            repeat_column = next((columns[c] for c in SIMULATION_REPEAT_COLUMNS if c in columns), None)
            for row in reader:
                strategy = (row.get(columns["strategy"]) or "").strip()
                labels = _to_float(row.get(columns["labels"]))
                accuracy = _to_float(row.get(columns["accuracy"]))
                if not strategy or labels is None or accuracy is None:
                    result.rows_skipped += 1
                    continue
                objectives = (row.get(columns["objectives"]) or "").strip() if "objectives" in columns else ""
                name = f"{strategy} / {objectives}" if objectives else strategy
                sums[(name, labels)].append(accuracy)
                if repeat_column:
                    repeats.add(row.get(repeat_column))
                result.rows_used += 1
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        result.error = f"could not be read: {exc}"
        return result
    if not result.rows_used:
        result.error = f"no usable rows ({result.rows_skipped} skipped)"
        return result
    series: dict[str, list[CurvePoint]] = defaultdict(list)
    for (name, labels), values in sums.items():
        series[name].append(CurvePoint(labels=labels, accuracy=sum(values) / len(values),
                                       source=f"mean of {len(values)}"))
    result.series = {name: sorted(points, key=lambda p: p.labels) for name, points in sorted(series.items())}
    result.repeats = len(repeats)
    return result


def catalogue_curves() -> dict[str, list[CurvePoint]]:
    """Return {setting: points}: the catalogue's accuracy on the test split's labels after each promotion decision.

    The accuracy the catalogue shows after the decision: with the new version when it was promoted (or forced),
    with the previous one when the guard kept it out.
    """
    rows = (TrainRun.objects.filter(status=TrainStatus.SUCCEEDED, metrics__has_key="promotion")
            .annotate(labels=KT("data_counts__exclusive_labels"), setting=KT("params__setting"),
                      before=KT("metrics__promotion__catalogue__before"),
                      after=KT("metrics__promotion__catalogue__after"), decision=KT("metrics__promotion__outcome"))
            .order_by("created_at", "id").values_list("id", "labels", "setting", "before", "after", "decision"))
    curves: dict[str, list[CurvePoint]] = defaultdict(list)
    for run_id, labels, setting, before, after, outcome in rows:
        accuracy = _to_float(before if outcome == "blocked" else after)
        labels_n = _to_float(labels)
        if labels_n is not None and accuracy is not None:
            curves[f"{setting or 'manual'} · catalogue"].append(
                CurvePoint(labels=labels_n, accuracy=accuracy, run_id=run_id, source=f"catalogue, {outcome}"))
    return {name: sorted(points, key=lambda p: (p.labels, p.run_id or 0)) for name, points in sorted(curves.items())}
