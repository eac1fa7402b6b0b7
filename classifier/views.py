"""Reviewers' model pages (htmx): train runs, one run, two runs compared, predictions, learning curves.

A partial for htmx requests, the whole page otherwise; every hx-get sits beside a real href. Reads go through
classifier.selectors; charts are server-rendered SVG (classifier.charts).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from classifier import charts
from classifier.models import TrainRun
from classifier.selectors.common import category_choices, category_get, duration_text
from classifier.selectors.curves import catalogue_curves, learning_curves, simulation_curves
from classifier.selectors.predictions import (
    Agreement,
    Cursor,
    PredictionFilters,
    prediction_count_capped,
    prediction_list,
    prediction_page,
)
from classifier.selectors.reports import PER_CLASS_SORTS, model_version_confused_pairs, run_reports
from classifier.selectors.runs import (
    run_comparison,
    run_count_rows,
    run_history_series,
    run_model_version,
    run_summary,
    run_timings,
    train_run_choices,
    train_run_get,
    train_run_in_progress_exists,
    train_run_latest_succeeded_ids,
    train_run_list,
    train_run_map,
)
from classifier.selectors.trust import trust_overview
from classifier.selectors.versions import model_version_active, model_version_choices, model_version_get
from classifier.services.promotion import PromotionRefused, train_run_promote_forced
from labelapp.common.access import role_required
from labelapp.common.querystring import int_or_none
from labelapp.common.roles import REVIEWER

RUNS_PER_PAGE = 50
PREDICTIONS_PER_PAGE = 50
POLL_SECONDS = 3


reviewer_required = role_required(REVIEWER)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


@require_GET
@reviewer_required
def review_home_view(request: HttpRequest) -> HttpResponse:
    return redirect("review-runs")


@require_GET
@reviewer_required
def run_list_view(request: HttpRequest) -> HttpResponse:
    page = Paginator(train_run_list(), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    polling = train_run_in_progress_exists()
    context = {"page": page, "rows": [run_summary(run) for run in page], "polling": polling,
               "poll_seconds": POLL_SECONDS, "active": model_version_active()}
    if request.htmx:
        response = render(request, "classifier/_run_table.html", context)
        return response if polling else HttpResponseStopPolling(response.content)
    return render(request, "classifier/runs.html", context)


def _not_found(request: HttpRequest, what: str) -> HttpResponse:
    return render(request, "classifier/not_found.html", {"what": what}, status=404)


@require_GET
@reviewer_required
def run_detail_view(request: HttpRequest, run_id: int) -> HttpResponse:
    try:
        run = train_run_get(train_run_id=run_id)
    except TrainRun.DoesNotExist:
        return _not_found(request, f"train run {run_id}")
    context = {"run": run, "summary": run_summary(run), "poll_seconds": POLL_SECONDS}
    if request.htmx and request.GET.get("fragment") == "status":
        response = render(request, "classifier/_run_status.html", context)
        if run.is_finished:
            # Stop polling and reload once, so the finished run shows its metrics and charts.
            response = HttpResponseStopPolling(response.content)
            response["HX-Refresh"] = "true"
        return response
    sort = request.GET.get("sort", "-support")
    reports = run_reports(run, sort=sort)
    history = run_history_series(run)
    loss_names = [name for name in history if "loss" in name]
    other_names = [name for name in history if name not in loss_names]
    context.update({
        "reports": [{"report": report, "confused_chart": _confused_chart(report.confused_pairs, report.title)}
                    for report in reports],
        "sort": sort if sort in PER_CLASS_SORTS else "-support",
        "counts": run_count_rows(run),
        "params": sorted((key, value) for key, value in run.params.items() if key != "warnings")
        if isinstance(run.params, dict) else [],
        "warnings": run.params.get("warnings") or [] if isinstance(run.params, dict) else [],
        "version": run_model_version(run),
        "loss_chart": _epoch_chart(history, loss_names, "Loss per epoch", "loss") if loss_names else None,
        "other_chart": _epoch_chart(history, other_names, "Other metrics per epoch", "value") if other_names else None,
        "timings_chart": _timings_chart(run_timings(run)),
        "promotion": (run.metrics or {}).get("promotion") if isinstance(run.metrics, dict) else None,
        "calibration": (run.metrics or {}).get("calibration") if isinstance(run.metrics, dict) else None,
    })
    if context["calibration"]:
        test = context["calibration"].get("test") or {}
        context["reliability_chart"] = reliability_chart(test.get("reliability") or [],
                                                         test.get("reliability_before") or [])
    return render(request, "classifier/run_detail.html", context)


@require_POST
@reviewer_required
def run_promote_view(request: HttpRequest, run_id: int) -> HttpResponse:
    """Reviewers: promote a version the guard kept out ("Promote anyway")."""
    try:
        run = train_run_get(train_run_id=run_id)
        outcome = train_run_promote_forced(run=run, user=request.user)
    except TrainRun.DoesNotExist:
        return _not_found(request, f"train run {run_id}")
    except PromotionRefused as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Run {run.id}'s model version is active ({outcome}).")
    return redirect("review-run-detail", run_id=run_id)


def reliability_chart(bins: list[dict], before: list[dict]) -> charts.Svg:
    """Return the reliability diagram: accuracy per confidence bin, calibrated and raw, against the diagonal."""
    series = [charts.Series("perfect calibration", [(0.0, 0.0), (1.0, 1.0)])]
    for name, rows in (("calibrated", bins), ("before calibration", before)):
        points = [(row["confidence"], row["accuracy"]) for row in rows if row.get("count")]
        notes = [f"{row['count']} products" for row in rows if row.get("count")]
        if points:
            series.append(charts.Series(name, points, notes=notes))
    return charts.line_chart(series, title="Reliability: accuracy per confidence bin (test-split labels)",
                             x_label="confidence", y_label="accuracy", y_range=(0, 1), width=560, height=320,
                             empty_message="No labelled test products to measure reliability on.")


@require_GET
@reviewer_required
def trust_view(request: HttpRequest) -> HttpResponse:
    """Reviewers: how precise each rule and feed is measured on the labels, and how reliable the model is."""
    overview = trust_overview()
    context = {"overview": overview,
               "reliability_chart": reliability_chart(overview.reliability, overview.reliability_before)}
    return render(request, "classifier/trust.html", context)


def _epoch_chart(history: dict, names: list[str], title: str, y_label: str) -> charts.Svg:
    series = [charts.Series(name, [(epoch, value) for epoch, value in enumerate(history[name], start=1)])
              for name in names]
    return charts.line_chart(series, title=title, x_label="epoch", y_label=y_label, x_integer=True)


def _timings_chart(timings: list[tuple[str, float]]) -> charts.Svg | None:
    if not timings:
        return None
    bars = [charts.Bar(label=stage, value=seconds, note=duration_text(seconds) if seconds >= 60 else "")
            for stage, seconds in timings]
    return charts.bar_chart(bars, title="Seconds per stage", value_format="{:,.1f} s", width=520, label_width=90)


def _confused_chart(pairs: list, title: str) -> charts.Svg:
    bars = [charts.Bar(label=f"{pair.true.name} → {pair.predicted.name}", value=pair.count,
                       title=f"{pair.true.full_path} → {pair.predicted.full_path}") for pair in pairs]
    return charts.bar_chart(bars, title=f"Most confused pairs (true → predicted): {title}", colour=charts.PALETTE[1],
                            empty_message="No confused pairs recorded.")


@require_GET
@reviewer_required
def compare_view(request: HttpRequest) -> HttpResponse:
    a_id, b_id = int_or_none(request.GET.get("a")), int_or_none(request.GET.get("b"))
    error, notice, comparison = "", "", None
    if a_id is None and b_id is None:
        latest = train_run_latest_succeeded_ids(count=2)
        if len(latest) == 2:
            b_id, a_id = latest
    if a_id is not None and b_id is not None:
        runs = train_run_map(ids=[a_id, b_id])
        missing = [str(i) for i in dict.fromkeys((a_id, b_id)) if i not in runs]
        if missing:
            error = f"No train run {' or '.join(missing)}."
        else:
            comparison = run_comparison(a=runs[a_id], b=runs[b_id])
    elif a_id is not None or b_id is not None:
        notice = f"Pick the other run to compare with run #{a_id if a_id is not None else b_id}."
    context = {"comparison": comparison, "error": error, "notice": notice, "a_id": a_id, "b_id": b_id,
               "choices": train_run_choices()}
    template = "classifier/_comparison.html" if request.htmx else "classifier/compare.html"
    return render(request, template, context, status=404 if error else 200)


@require_GET
@reviewer_required
def prediction_list_view(request: HttpRequest) -> HttpResponse:
    requested = int_or_none(request.GET.get("version"))
    version = (model_version_get(version_id=requested) if requested is not None
               else model_version_active())
    below = _float(request.GET.get("below"))
    category_id = int_or_none(request.GET.get("category"))
    context = {"version": version, "versions": model_version_choices(), "requested_version": requested,
               "agreement_choices": Agreement.CHOICES}
    if version is None:
        status = 404 if requested is not None else 200
        return render(request, "classifier/predictions.html", context, status=status)
    filters = PredictionFilters(
        version_id=version.id,
        below=below if below is not None and 0 <= below <= 1 else None,
        rules=request.GET.get("rules", "") if request.GET.get("rules") in Agreement.CHOICES else "",
        label=request.GET.get("label", "") if request.GET.get("label") in Agreement.CHOICES else "",
        category_id=category_id,
        q=request.GET.get("q", "").strip()[:200],
        descending=request.GET.get("order") == "-confidence",
    )
    after = Cursor.decode(request.GET.get("after"))
    page = prediction_page(filters=filters, after=after, size=PREDICTIONS_PER_PAGE)
    count, capped = prediction_count_capped(prediction_list(filters=filters))
    query = request.GET.copy()
    query.pop("after", None)
    if requested is None:
        query.pop("version", None)
    next_query = query.copy()
    if page.next_cursor:
        next_query["after"] = page.next_cursor.encode()
    without_category = query.copy()
    without_category.pop("category", None)
    context.update({
        "filters": filters, "page": page, "count": count, "capped": capped, "after": after,
        "selected_category": category_get(category_id=category_id) if category_id else None,
        "category_choices": category_choices(max_depth=2),
        "query": query.urlencode(), "next_query": next_query.urlencode(),
        "query_without_category": without_category.urlencode(),
    })
    template = "classifier/_prediction_results.html" if request.htmx else "classifier/predictions.html"
    return render(request, template, context)


@require_GET
@reviewer_required
def curves_view(request: HttpRequest) -> HttpResponse:
    curves = {**learning_curves(), **catalogue_curves()}
    curve_chart = charts.line_chart(
        [charts.Series(name, [(p.labels, p.accuracy) for p in points],
                       notes=[f"run {p.run_id}, {p.source}" for p in points]) for name, points in curves.items()],
        title="Test accuracy vs human labels used, per setting (the model; “· catalogue”: the catalogue after "
              "each promotion decision)",
        x_label="human labels used for training",
        y_label="test accuracy", x_integer=True, y_range=(0, 1),
        empty_message="No succeeded train run with labels and accuracy yet.")
    simulations = simulation_curves(directory=Path(settings.ARTEFACT_ROOT) / "simulations")
    simulation_charts = [
        {"file": sim, "chart": charts.line_chart(
            [charts.Series(name, [(p.labels, p.accuracy) for p in points], notes=[p.source for p in points])
             for name, points in sim.series.items()],
            title=f"Simulated mean accuracy per strategy: {sim.name}", x_label="labels",
            y_label="mean accuracy", x_integer=True, y_range=(0, 1))}
        for sim in simulations if not sim.error]
    active = model_version_active()
    confused_report, confused = model_version_confused_pairs(active) if active else ("", [])
    context = {
        "curves": list(curves.items()), "curve_chart": curve_chart, "simulations": simulations,
        "simulation_charts": simulation_charts, "simulation_errors": [s for s in simulations if s.error],
        "active": active, "confused_report": confused_report,
        "confused_chart": _confused_chart(confused, f"{active.name}" if active else "") if active else None,
    }
    return render(request, "classifier/curves.html", context)
