"""Reads for the reviewers' model pages: train runs, run comparisons, the predictions browser, learning curves.

Everything here only reads. Metric reports are the JSON the pipeline stores on `TrainRun.metrics`
({"ground_truth": REPORT, "rule_test": REPORT}); any key may be missing and any number may be null (NaN), so
every accessor tolerates both. Category ids inside reports are resolved to nodes in one query per page.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KT

from classifier.models import ModelVersion, Prediction, TrainRun, TrainStage, TrainStatus
from labelapp.models import Category, Label, Product, RuleLabel

REPORTS = (("ground_truth", "Ground truth (hand-labelled test products)"),
           ("rule_test", "Rule test set (test products the legacy rules label)"))
EXCLUSIVE_METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("weighted_f1", "weighted F1"),
                     ("top3_accuracy", "top-3 accuracy"), ("top5_accuracy", "top-5 accuracy"))
RULE_METRICS = (("micro_f1", "micro F1"), ("macro_f1", "macro F1"))
PER_CLASS_SORTS = ("f1", "-f1", "support", "-support", "precision", "-precision", "recall", "-recall", "category")
IN_PROGRESS = (TrainStatus.QUEUED, TrainStatus.RUNNING)


# ---------------------------------------------------------------------------------------------------------------
# Small helpers over the stored JSON


def number(value: Any) -> float | None:
    """Return a finite float, or None for anything else (null, NaN, text, booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def json_at(data: Any, path: str) -> Any:
    """Return data["a"]["b"]… for the dotted path "a.b…", or None where any step is missing."""
    for key in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def duration_text(seconds: float | None) -> str:
    """Return '1 h 02 min', '3 min 05 s' or '12.3 s' ('' when unknown)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _level_key(key: str) -> tuple[int, str]:
    return (int(key), key) if str(key).isdigit() else (10**6, str(key))


def category_choices(*, max_depth: int = 2) -> list[Category]:
    """Return the top of the tree (depth ≤ max_depth) in path order, for a subtree picker."""
    return list(Category.objects.filter(depth__lte=max_depth).only("id", "full_path", "depth").order_by("full_path"))


def category_get(*, category_id: int) -> Category | None:
    """Return one category, or None."""
    return Category.objects.filter(pk=category_id).first()


def category_lookup(*, ids) -> dict[int, Category]:
    """Return {id: category} for the given ids (unknown ids are simply absent)."""
    wanted = {int(i) for i in ids if isinstance(i, int) or (isinstance(i, str) and i.isdigit())}
    if not wanted:
        return {}
    return {c.id: c for c in Category.objects.filter(id__in=wanted).only("id", "name", "full_path", "depth")}


@dataclass(frozen=True)
class CategoryRef:
    """A category id from a report, resolved when the node still exists."""

    id: int | None
    node: Category | None

    @property
    def name(self) -> str:
        return self.node.name if self.node else (f"category {self.id}" if self.id is not None else "none")

    @property
    def full_path(self) -> str:
        return self.node.full_path if self.node else self.name


def _ref(category_id: Any, lookup: dict[int, Category]) -> CategoryRef:
    cid = int(category_id) if isinstance(category_id, (int, float)) and not isinstance(category_id, bool) else None
    return CategoryRef(id=cid, node=lookup.get(cid) if cid is not None else None)


# ---------------------------------------------------------------------------------------------------------------
# Train runs


def train_run_list() -> QuerySet[TrainRun]:
    """Return every train run, newest first, with its model version (if any) joined."""
    return TrainRun.objects.select_related("model_version", "requested_by").defer("feature_config")


def train_run_in_progress_exists() -> bool:
    """Return whether any train run is queued or running."""
    return TrainRun.objects.filter(status__in=IN_PROGRESS).exists()


def train_run_get(*, run_id: int) -> TrainRun:
    """Return one train run with its model version; raises TrainRun.DoesNotExist."""
    return TrainRun.objects.select_related("model_version", "requested_by").get(pk=run_id)


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


# ---------------------------------------------------------------------------------------------------------------
# One run's reports


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
    parsed = [PerClassRow(category=_ref(row.get("category"), lookup), precision=number(row.get("precision")),
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
                for level in sorted(levels, key=_level_key)],
        per_class=_per_class_rows(head.get("per_class"), lookup, sort),
    )


def _confused_pairs(report: Any, lookup: dict[int, Category], limit: int) -> list[ConfusedPair]:
    pairs = []
    for pair in json_at(report, "exclusive.confused_pairs") or []:
        if isinstance(pair, (list, tuple)) and len(pair) >= 3 and number(pair[2]) is not None:
            pairs.append(ConfusedPair(true=_ref(pair[0], lookup), predicted=_ref(pair[1], lookup),
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


# ---------------------------------------------------------------------------------------------------------------
# Comparing two runs


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
            for level in sorted(levels, key=_level_key):
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
    changes = [F1Change(category=_ref(cid, lookup), a=f1_a[cid][0], b=f1_b[cid][0], support_b=f1_b[cid][1])
               for cid in shared]
    gains = sorted((c for c in changes if c.diff > 1e-12), key=lambda c: (-c.diff, c.category.full_path))[:limit]
    losses = sorted((c for c in changes if c.diff < -1e-12), key=lambda c: (c.diff, c.category.full_path))[:limit]
    return Comparison(a=a, b=b, settings=settings, metrics=_metric_rows(a.metrics or {}, b.metrics or {}),
                      counts=counts, f1_gains=gains, f1_losses=losses, f1_compared=len(shared))


# ---------------------------------------------------------------------------------------------------------------
# Model versions and their predictions


def model_version_active() -> ModelVersion | None:
    """Return the active model version, if any."""
    return ModelVersion.objects.filter(is_active=True).select_related("train_run").first()


def model_version_get(*, version_id: int) -> ModelVersion | None:
    """Return one model version, or None."""
    return ModelVersion.objects.filter(pk=version_id).select_related("train_run").first()


def model_version_list() -> list[ModelVersion]:
    """Return every model version, newest first (without their class lists)."""
    return list(ModelVersion.objects.defer("classes", "rule_classes", "rule_thresholds").order_by("-created_at", "-id"))


def model_version_confused_pairs(version: ModelVersion, *, limit: int = 15) -> tuple[str, list[ConfusedPair]]:
    """Return (report key, most confused pairs) from the version's train run: ground truth, else the rule test set."""
    metrics = version.train_run.metrics if isinstance(version.train_run.metrics, dict) else {}
    for key, _ in REPORTS:
        report = metrics.get(key)
        if isinstance(report, dict) and json_at(report, "exclusive.confused_pairs"):
            return key, _confused_pairs(report, category_lookup(ids=_report_category_ids(report)), limit)
    return "", []


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
        top = [(_ref(cid, lookup), prob) for cid, prob in _top_entries(p.top_k, 3)]
        if not top and p.category_id:
            top = [(_ref(p.category_id, lookup), number(p.confidence))]
        rows.append(PredictionRow(
            prediction=p, product=p.product, top=top, rule_categories=[_ref(c, lookup) for c in rules[p.product_id]],
            labelled=p.labelled, label_category=_ref(p.label_category_id, lookup) if p.label_category_id else None))
    last = predictions[-1] if predictions else None
    return PredictionPage(rows=rows, next_cursor=Cursor(confidence=last.confidence, id=last.id)
                          if has_next and last else None)


def _top_entries(top_k: Any, limit: int) -> list[tuple[int, float | None]]:
    entries = []
    for entry in top_k if isinstance(top_k, list) else []:
        if isinstance(entry, (list, tuple)) and len(entry) >= 2 and isinstance(entry[0], int):
            entries.append((entry[0], number(entry[1])))
    return entries[:limit]


# ---------------------------------------------------------------------------------------------------------------
# Learning curves


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
