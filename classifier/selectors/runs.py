"""Reads of train runs: the runs table, one run's details, and two runs compared."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from classifier.models import ModelVersion, TrainRun, TrainStage, TrainStatus
from classifier.selectors.common import (
    CategoryRef,
    category_lookup,
    category_ref,
    duration_text,
    json_at,
    level_sort_key,
    number,
)
from classifier.selectors.reports import EXCLUSIVE_METRICS, REPORTS, RULE_METRICS

IN_PROGRESS = (TrainStatus.QUEUED, TrainStatus.RUNNING)


def train_run_list(*, status: str = "", trigger: str = "") -> QuerySet[TrainRun]:
    """Return train runs, newest first, with their model version joined, optionally filtered by status and trigger."""
    # The feature config is a page of TOML that only the run's own page shows: keep it out of lists.
    runs = (TrainRun.objects.select_related("model_version", "requested_by").defer("feature_config")
            .order_by("-created_at", "-id"))
    if status:
        runs = runs.filter(status=status)
    if trigger:
        runs = runs.filter(trigger=trigger)
    return runs


def train_run_in_progress_exists() -> bool:
    """Return whether any train run is queued or running."""
    return TrainRun.objects.filter(status__in=IN_PROGRESS).exists()


def train_run_get(*, train_run_id: int) -> TrainRun:
    """Return one train run with its model version; raises TrainRun.DoesNotExist."""
    return TrainRun.objects.select_related("model_version", "requested_by").get(pk=train_run_id)


def train_run_map(*, ids: list[int]) -> dict[int, TrainRun]:
    """Return {id: run} for the runs that exist among `ids`."""
    return {run.id: run for run in train_run_list().filter(id__in=ids)}


def train_run_choices(*, limit: int = 300) -> list[TrainRun]:
    """Return the newest runs (id, status, architecture, params, created_at) for a run picker."""
    return list(TrainRun.objects.only("id", "status", "architecture", "objectives", "params", "created_at")
                .order_by("-created_at", "-id")[:limit])


def train_run_latest_succeeded_ids(*, count: int = 2) -> list[int]:
    """Return the ids of the newest succeeded runs, newest first."""
    return list(TrainRun.objects.filter(status=TrainStatus.SUCCEEDED).order_by("-created_at", "-id")
                .values_list("id", flat=True)[:count])


def run_setting(run: TrainRun) -> str:
    """Return the run's labelling setting (params.setting), or 'manual' when it has none."""
    setting = (run.params or {}).get("setting") if isinstance(run.params, dict) else None
    return str(setting) if setting else "manual"


@dataclass(frozen=True)
class RunSummary:
    """One row of the runs table."""

    run: TrainRun
    setting: str
    round: Any
    exclusive_labels: int | None
    labels_by_strategy: list[tuple[str, Any]]
    train_count: Any
    gt_accuracy: float | None
    gt_macro_f1: float | None
    rule_accuracy: float | None
    rule_micro_f1: float | None
    duration: str
    is_active: bool
    version_name: str

    @property
    def in_progress(self) -> bool:
        return self.run.status in IN_PROGRESS


def run_summary(run: TrainRun) -> RunSummary:
    """Return what the runs table shows of one run."""
    counts = run.data_counts if isinstance(run.data_counts, dict) else {}
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    by_strategy = counts.get("labels_by_strategy")
    version = getattr(run, "model_version", None) if _has_version(run) else None
    return RunSummary(
        run=run,
        setting=run_setting(run),
        round=(run.params or {}).get("round") if isinstance(run.params, dict) else None,
        exclusive_labels=counts.get("exclusive_labels"),
        labels_by_strategy=sorted(by_strategy.items()) if isinstance(by_strategy, dict) else [],
        train_count=counts.get("train"),
        gt_accuracy=number(json_at(metrics, "ground_truth.exclusive.accuracy")),
        gt_macro_f1=number(json_at(metrics, "ground_truth.exclusive.macro_f1")),
        rule_accuracy=number(json_at(metrics, "rule_test.exclusive.accuracy")),
        rule_micro_f1=number(json_at(metrics, "rule_test.rule.micro_f1")),
        duration=duration_text(run.duration_s),
        is_active=bool(version and version.is_active),
        version_name=version.name if version else "",
    )


def _has_version(run: TrainRun) -> bool:
    try:
        run.model_version
    except ModelVersion.DoesNotExist:
        return False
    return True


def run_model_version(run: TrainRun) -> ModelVersion | None:
    """Return the run's model version, or None when it made none."""
    return run.model_version if _has_version(run) else None


def run_history_series(run: TrainRun) -> dict[str, list[float | None]]:
    """Return the per-epoch series of the run's history ({name: [value per epoch]}), non-numbers as None."""
    history = run.history if isinstance(run.history, dict) else {}
    return {str(name): [number(v) for v in values] for name, values in history.items() if isinstance(values, list)}


COUNT_ORDER = ("train", "validation", "exclusive_labels", "labels_by_strategy", "rule_known", "test_rule",
               "test_ground_truth", "classes", "rule_classes", "products_predicted")


def _ordered_items(data: dict, order: tuple[str, ...]) -> list[tuple[str, Any]]:
    # jsonb keeps keys sorted by length, not as written: put the known keys in pipeline order, the rest after.
    rank = {key: index for index, key in enumerate(order)}
    return sorted(data.items(), key=lambda item: (rank.get(item[0], len(rank)), str(item[0])))


def _flat_counts(counts: Any) -> dict[str, Any]:
    flat = {}
    for key, value in _ordered_items(counts if isinstance(counts, dict) else {}, COUNT_ORDER):
        if isinstance(value, dict):
            flat.update({f"{key.replace('_', ' ')}: {sub}": subvalue for sub, subvalue in sorted(value.items())})
        else:
            flat[key.replace("_", " ")] = value
    return flat


def run_count_rows(run: TrainRun) -> list[tuple[str, Any]]:
    """Return the run's data counts flattened to (name, value), labels per strategy as 'labels by strategy: s'."""
    return list(_flat_counts(run.data_counts).items())


def run_timings(run: TrainRun) -> list[tuple[str, float]]:
    """Return (stage, seconds) in pipeline order; stages without a number are left out."""
    timings = run.timings if isinstance(run.timings, dict) else {}
    stages = tuple(TrainStage.values)
    return [(str(stage), seconds) for stage, value in _ordered_items(timings, stages)
            if (seconds := number(value)) is not None]


@dataclass(frozen=True)
class DiffRow:
    group: str
    name: str
    a: float | None
    b: float | None
    higher_is_better: bool = True

    @property
    def diff(self) -> float | None:
        return self.b - self.a if self.a is not None and self.b is not None else None

    @property
    def diff_text(self) -> str:
        diff = self.diff
        if diff is None:
            return ""
        if float(self.a).is_integer() and float(self.b).is_integer():
            return f"{diff:+,.0f}"
        return f"{diff:+.3f}"

    @property
    def verdict(self) -> str:
        """'better', 'worse' or '' (equal, unknown, or a count where neither direction is better)."""
        diff = self.diff
        if diff is None or abs(diff) < 1e-12 or not self.higher_is_better:
            return ""
        return "better" if diff > 0 else "worse"


@dataclass(frozen=True)
class F1Change:
    category: CategoryRef
    a: float
    b: float
    support_b: float | None

    @property
    def diff(self) -> float:
        return self.b - self.a

    @property
    def diff_text(self) -> str:
        return f"{self.diff:+.3f}"


@dataclass
class Comparison:
    a: TrainRun
    b: TrainRun
    settings: list[tuple[str, str, str]]
    metrics: list[DiffRow]
    counts: list[DiffRow]
    f1_gains: list[F1Change]
    f1_losses: list[F1Change]
    f1_compared: int


def _metric_rows(a: dict, b: dict) -> list[DiffRow]:
    """Return every metric either run has (a metric neither run recorded is left out)."""
    return [row for row in _all_metric_rows(a, b) if row.a is not None or row.b is not None]


def _all_metric_rows(a: dict, b: dict) -> list[DiffRow]:
    rows = []
    for key, title in REPORTS:
        group = title.split(" (")[0]
        for head, names in (("exclusive", EXCLUSIVE_METRICS), ("rule", RULE_METRICS)):
            path = f"{key}.{head}"
            if json_at(a, path) is None and json_at(b, path) is None:
                continue
            head_name = "exclusive" if head == "exclusive" else "rule head"
            rows.append(DiffRow(group, f"{head_name}: test products (n)", number(json_at(a, f"{path}.n")),
                                number(json_at(b, f"{path}.n")), higher_is_better=False))
            rows.extend(DiffRow(group, f"{head_name}: {label}", number(json_at(a, f"{path}.{metric}")),
                                number(json_at(b, f"{path}.{metric}"))) for metric, label in names)
            levels = set((json_at(a, f"{path}.levels") or {}).keys()) | set((json_at(b, f"{path}.levels") or {}).keys())
            for level in sorted(levels, key=level_sort_key):
                rows.extend(DiffRow(group, f"{head_name}: level {level} {label}",
                                    number(json_at(a, f"{path}.levels.{level}.{metric}")),
                                    number(json_at(b, f"{path}.levels.{level}.{metric}")))
                            for metric, label in names)
    return rows


def _f1_by_category(run: TrainRun, report: str) -> dict[int, tuple[float, float | None]]:
    out = {}
    for row in json_at(run.metrics, f"{report}.exclusive.per_class") or []:
        if isinstance(row, dict) and isinstance(row.get("category"), int) and number(row.get("f1")) is not None:
            out[row["category"]] = (number(row["f1"]), number(row.get("support")))
    return out


def run_comparison(*, a: TrainRun, b: TrainRun, limit: int = 15) -> Comparison:
    """Return every metric of run `a` beside run `b` with the difference b − a, and the biggest per-category F1 moves.

    Per-category F1 comes from the ground-truth report when both runs have one, else from the rule test set.
    """
    settings = [
        ("architecture", a.architecture, b.architecture),
        ("objectives", " + ".join(a.objectives), " + ".join(b.objectives)),
        ("setting", run_setting(a), run_setting(b)),
        ("round", str((a.params or {}).get("round", "")), str((b.params or {}).get("round", ""))),
        ("trigger", a.trigger, b.trigger),
        ("status", a.status, b.status),
    ]
    counts_a, counts_b = _flat_counts(a.data_counts), _flat_counts(b.data_counts)
    counts = [DiffRow("data", name, number(counts_a.get(name)), number(counts_b.get(name)), higher_is_better=False)
              for name in list(counts_a) + [n for n in counts_b if n not in counts_a]]
    report = next((key for key, _ in REPORTS if _f1_by_category(a, key) and _f1_by_category(b, key)), "ground_truth")
    f1_a, f1_b = _f1_by_category(a, report), _f1_by_category(b, report)
    shared = sorted(set(f1_a) & set(f1_b))
    lookup = category_lookup(ids=shared)
    changes = [F1Change(category=category_ref(cid, lookup), a=f1_a[cid][0], b=f1_b[cid][0], support_b=f1_b[cid][1])
               for cid in shared]
    gains = sorted((c for c in changes if c.diff > 1e-12), key=lambda c: (-c.diff, c.category.full_path))[:limit]
    losses = sorted((c for c in changes if c.diff < -1e-12), key=lambda c: (c.diff, c.category.full_path))[:limit]
    return Comparison(a=a, b=b, settings=settings, metrics=_metric_rows(a.metrics or {}, b.metrics or {}),
                      counts=counts, f1_gains=gains, f1_losses=losses, f1_compared=len(shared))
