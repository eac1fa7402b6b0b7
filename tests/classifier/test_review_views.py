"""The reviewers' model pages: train runs, one run, comparisons, the predictions browser, learning curves."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.utils import timezone

from classifier.selectors import common
from classifier.selectors.predictions import Cursor, PredictionFilters, prediction_list, prediction_page
from labelapp.catalogue.models import RuleLabel
from labelapp.common.roles import API_CLIENT, LABELLER, REVIEWER
from tests.factories import (
    LabelFactory,
    LegacyRuleFactory,
    ModelVersionFactory,
    PredictionFactory,
    ProductFactory,
    TrainRunFactory,
    category,
)

pytestmark = pytest.mark.django_db

NS = "{http://www.w3.org/2000/svg}"
PAGES = ["/review/runs/", "/review/compare/", "/review/predictions/", "/review/curves/"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Users are made per test: PBKDF2's deliberate slowness would dominate these tests' time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _artefacts_in_tmp(settings, tmp_path):
    settings.ARTEFACT_ROOT = tmp_path / "artefacts"


@pytest.fixture
def reviewer(client, make_user):
    user = make_user("rev", REVIEWER)
    client.force_login(user)
    return user


@pytest.fixture
def tree():
    return {
        "shirts": category("Apparel > Topwear > Shirts", exclusive=True),
        "tees": category("Apparel > Topwear > Tshirts", exclusive=True),
        "jeans": category("Apparel > Bottomwear > Jeans", exclusive=True),
    }


def _svgs(response) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r"<svg\b.*?</svg>", response.content.decode(), flags=re.S)]


def _series(svg: ET.Element) -> dict[str, int]:
    return {g.get("data-series"): len(g.findall(f"{NS}circle"))
            for g in svg.iter(f"{NS}g") if g.get("class") == "series"}


def _report(tree, *, accuracy=0.8, macro_f1=0.7, per_class=None, confused=None, levels=None, rule=True):
    per_class = per_class if per_class is not None else [
        {"category": tree["shirts"].id, "precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 40},
        {"category": tree["tees"].id, "precision": 0.5, "recall": 0.4, "f1": 0.44, "support": 25},
        {"category": tree["jeans"].id, "precision": None, "recall": 0.0, "f1": 0.0, "support": 3},
    ]
    report = {"exclusive": {
        "n": 68, "accuracy": accuracy, "macro_f1": macro_f1, "weighted_f1": 0.75, "top3_accuracy": 0.95,
        "top5_accuracy": None, "per_class": per_class,
        "confused_pairs": confused if confused is not None else [[tree["tees"].id, tree["shirts"].id, 9],
                                                                 [tree["jeans"].id, tree["tees"].id, 2]],
        "levels": levels if levels is not None else {"1": {"accuracy": 0.99, "macro_f1": 0.98},
                                                     "2": {"accuracy": 0.9, "macro_f1": 0.85}},
    }}
    if rule:
        report["rule"] = {"n": 50, "micro_f1": 0.66, "macro_f1": 0.5, "per_class": [
            {"category": tree["shirts"].id, "precision": 0.7, "recall": 0.6, "f1": 0.65, "support": 20,
             "threshold": 0.35}], "levels": {"1": {"micro_f1": 0.9, "macro_f1": 0.8}}}
    return report


# ------------------------------------------------------------------------------------------------ access


@pytest.mark.parametrize("path", PAGES + ["/review/runs/1/"])
@pytest.mark.parametrize("role", [LABELLER, API_CLIENT])
def test_pages_are_for_reviewers_only(client, make_user, path, role):
    client.force_login(make_user("someone", role))

    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_users_are_sent_to_login(client, path):
    response = client.get(path)

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_an_empty_state(client, reviewer, path):
    response = client.get(path)

    assert response.status_code == 200
    assert b'class="empty"' in response.content


def test_staff_see_the_pages_and_the_nav_link_only_shows_for_reviewers(client, make_user):
    client.force_login(make_user("boss", staff=True))
    assert client.get("/review/runs/").status_code == 200
    assert b'href="/review/runs/">Models</a>' in client.get("/").content

    client.force_login(make_user("lab", LABELLER))
    assert b'href="/review/runs/"' not in client.get("/").content


# ------------------------------------------------------------------------------------------------ runs


def test_runs_table_shows_settings_counts_metrics_outcome_and_the_active_version(client, reviewer, tree):
    started = timezone.now() - timedelta(minutes=5)
    run = TrainRunFactory(params={"round": 3, "setting": "margin 80% + random 20% / exclusive+rule"},
                          trigger="round", objectives=["exclusive", "rule"], outcome="promoted",
                          data_counts={"exclusive_labels": 240, "train": 900,
                                       "labels_by_strategy": {"random": 48, "margin": 192}},
                          metrics={"ground_truth": _report(tree, accuracy=0.8125)},
                          started_at=started, finished_at=started + timedelta(seconds=185))
    ModelVersionFactory(train_run=run, name="wd-0003", is_active=True)
    TrainRunFactory(status="failed", error="CUDA out of memory")

    response = client.get("/review/runs/")

    html = response.content.decode()
    assert "margin 80% + random 20% / exclusive+rule" in html and "round 3" in html
    assert "240" in html and "margin 192" in html and "0.813" in html and "3 min 05 s" in html
    assert "wd-0003" in html and "badge-active" in html and "promoted" in html
    assert "CUDA out of memory" in html
    assert "hx-trigger" not in html


def test_runs_table_polls_while_a_run_is_in_progress_and_stops_after(client, reviewer):
    run = TrainRunFactory(status="running", stage="train", progress_percent=40, progress_message="epoch 4 of 10")

    page = client.get("/review/runs/")
    poll = client.get("/review/runs/", HTTP_HX_REQUEST="true")
    run.status, run.stage = "succeeded", "done"
    run.save()
    last = client.get("/review/runs/", HTTP_HX_REQUEST="true")

    assert b'hx-trigger="every' in page.content and b"epoch 4 of 10" in page.content
    assert poll.status_code == 200 and b"<html" not in poll.content and b'hx-trigger="every' in poll.content
    assert last.status_code == 286 and b'hx-trigger="every' not in last.content


# ------------------------------------------------------------------------------------------------ one run


def test_run_detail_shows_settings_counts_timings_losses_and_both_reports(client, reviewer, tree):
    run = TrainRunFactory(
        params={"epochs": 3, "setting": "random / exclusive"},
        data_counts={"train": 900, "validation": 100, "exclusive_labels": 240, "labels_by_strategy": {"random": 240},
                     "test_ground_truth": 68},
        timings={"dataset": 2.5, "train": 61.0, "evaluate": 4.0},
        history={"loss": [1.5, 1.0, 0.8], "val_loss": [1.6, 1.2, None], "accuracy": [0.5, 0.6, 0.7]},
        metrics={"ground_truth": _report(tree), "rule_test": _report(tree, accuracy=0.6, rule=False)},
    )

    response = client.get(f"/review/runs/{run.id}/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "random / exclusive" in html and "labels by strategy: random" in html and "test ground truth" in html
    assert "Ground truth (hand-labelled" in html and "Rule test set" in html
    assert "level 2" in html and "0.850" in html and "Apparel &gt; Topwear &gt; Tshirts" in html
    svgs = _svgs(response)
    loss = next(s for s in svgs if s.get("aria-label") == "Loss per epoch")
    assert _series(loss) == {"loss": 3, "val_loss": 2}
    other = next(s for s in svgs if s.get("aria-label") == "Other metrics per epoch")
    assert _series(other) == {"accuracy": 3}
    timings = next(s for s in svgs if s.get("aria-label") == "Seconds per stage")
    assert len([g for g in timings.iter(f"{NS}g") if g.get("class") == "bar"]) == 3
    confused = [s for s in svgs if (s.get("aria-label") or "").startswith("Most confused pairs")]
    assert len(confused) == 2
    texts = "".join(confused[0].itertext())
    assert "Tshirts → Shirts" in texts and "Jeans → Tshirts" in texts


def test_run_detail_sorts_categories_by_f1_or_support(client, reviewer, tree):
    run = TrainRunFactory(metrics={"ground_truth": _report(tree, rule=False)})

    def order(sort):
        html = client.get(f"/review/runs/{run.id}/", {"sort": sort}).content.decode()
        table = html[html.index("Per category"):]
        return sorted(["Topwear &gt; Shirts", "Topwear &gt; Tshirts", "Bottomwear &gt; Jeans"], key=table.index)

    assert order("f1") == ["Bottomwear &gt; Jeans", "Topwear &gt; Tshirts", "Topwear &gt; Shirts"]
    assert order("-f1") == ["Topwear &gt; Shirts", "Topwear &gt; Tshirts", "Bottomwear &gt; Jeans"]
    assert order("support") == ["Bottomwear &gt; Jeans", "Topwear &gt; Tshirts", "Topwear &gt; Shirts"]
    assert order("nonsense") == order("-support") == ["Topwear &gt; Shirts", "Topwear &gt; Tshirts",
                                                      "Bottomwear &gt; Jeans"]


def test_a_failed_run_shows_its_error_and_no_metrics(client, reviewer):
    run = TrainRunFactory(status="failed", error="Traceback …\nValueError: no labelled products")

    html = client.get(f"/review/runs/{run.id}/").content.decode()

    assert "Why it failed" in html and "ValueError: no labelled products" in html
    assert "This run recorded no metrics." in html


def test_a_missing_run_is_a_404(client, reviewer):
    assert client.get("/review/runs/999999/").status_code == 404


def test_run_status_polls_until_the_run_finishes(client, reviewer):
    run = TrainRunFactory(status="running", stage="evaluate", progress_percent=80)

    running = client.get(f"/review/runs/{run.id}/", {"fragment": "status"}, HTTP_HX_REQUEST="true")
    run.status = "succeeded"
    run.save()
    finished = client.get(f"/review/runs/{run.id}/", {"fragment": "status"}, HTTP_HX_REQUEST="true")

    assert running.status_code == 200 and b'hx-trigger="every' in running.content and b"<html" not in running.content
    assert finished.status_code == 286 and finished["HX-Refresh"] == "true"


# ------------------------------------------------------------------------------------------------ compare


def test_comparison_shows_each_metric_with_its_difference_and_per_category_moves(client, reviewer, tree):
    a = TrainRunFactory(data_counts={"exclusive_labels": 100, "labels_by_strategy": {"random": 100}},
                        metrics={"ground_truth": _report(tree, accuracy=0.7, macro_f1=0.6)})
    b = TrainRunFactory(
        data_counts={"exclusive_labels": 200, "labels_by_strategy": {"random": 120, "margin": 80}},
        params={"setting": "margin"},
        metrics={"ground_truth": _report(
            tree, accuracy=0.75, macro_f1=0.55,
            levels={"1": {"accuracy": 0.97, "macro_f1": 0.98}, "2": {"accuracy": 0.95, "macro_f1": 0.85}},
            per_class=[{"category": tree["shirts"].id, "f1": 0.80, "support": 41},
                       {"category": tree["tees"].id, "f1": 0.64, "support": 26},
                       {"category": tree["jeans"].id, "f1": 0.0, "support": 3}])})

    response = client.get("/review/compare/", {"a": a.id, "b": b.id})
    comparison = response.context["comparison"]

    rows = {(r.group, r.name): r for r in comparison.metrics}
    accuracy = rows[("Ground truth", "exclusive: accuracy")]
    assert (accuracy.a, accuracy.b, accuracy.diff_text, accuracy.verdict) == (0.7, 0.75, "+0.050", "better")
    assert rows[("Ground truth", "exclusive: macro F1")].verdict == "worse"
    assert rows[("Ground truth", "exclusive: level 1 accuracy")].diff_text == "-0.020"
    assert rows[("Ground truth", "exclusive: level 2 accuracy")].diff_text == "+0.050"
    assert ("Ground truth", "exclusive: top-5 accuracy") not in rows  # neither run recorded it
    assert rows[("Ground truth", "rule head: micro F1")].diff_text == "+0.000"
    assert [(c.category.id, c.diff_text) for c in comparison.f1_gains] == [(tree["tees"].id, "+0.200")]
    assert [(c.category.id, c.diff_text) for c in comparison.f1_losses] == [(tree["shirts"].id, "-0.050")]
    counts = {r.name: r.diff_text for r in comparison.counts}
    assert counts == {"exclusive labels": "+100", "labels by strategy: random": "+20",
                      "labels by strategy: margin": ""}
    html = response.content.decode()
    assert 'class="num diff better">+0.050' in html and 'class="num diff worse">-0.050' in html
    assert "Apparel &gt; Topwear &gt; Tshirts" in html


def test_comparison_defaults_to_the_two_newest_succeeded_runs_and_is_an_htmx_partial(client, reviewer):
    older, newer = TrainRunFactory(), TrainRunFactory()
    TrainRunFactory(status="failed")

    page = client.get("/review/compare/")
    partial = client.get("/review/compare/", {"a": newer.id, "b": older.id}, HTTP_HX_REQUEST="true")

    assert (page.context["a_id"], page.context["b_id"]) == (older.id, newer.id)
    assert b"<html" not in partial.content and partial.context["comparison"].a == newer


def test_comparing_a_missing_run_says_which(client, reviewer):
    run = TrainRunFactory()

    response = client.get("/review/compare/", {"a": run.id, "b": 999999})

    assert response.status_code == 404 and b"No train run 999999." in response.content


def test_one_run_alone_asks_for_the_other(client, reviewer):
    run = TrainRunFactory()

    response = client.get("/review/compare/", {"b": run.id})

    assert response.status_code == 200 and response.context["comparison"] is None
    assert f"Pick the other run to compare with run #{run.id}.".encode() in response.content


# ------------------------------------------------------------------------------------------------ predictions


@pytest.fixture
def predictions(tree):
    """Seven products whose predictions agree or disagree with their rules and labels in known ways."""
    shirts, tees, jeans = tree["shirts"], tree["tees"], tree["jeans"]
    version = ModelVersionFactory(is_active=True)
    other_version = ModelVersionFactory()
    products = {name: ProductFactory(title=title) for name, title in [
        ("agrees", "Linen shirt"), ("rules_and_label_differ", "Oxford shirt"), ("relabelled", "Plain tee"),
        ("rules_agree_unlabelled", "Slim jeans"), ("none_fits", "Odd thing"), ("label_corrected", "Denim shirt"),
        ("correction_undone", "Ribbed tee")]}
    spec = {  # name: (predicted, confidence, rule categories, labels oldest first; None = "none fits")
        "agrees": (shirts, 0.30, [shirts], [shirts]),
        "rules_and_label_differ": (shirts, 0.80, [tees], [tees]),
        "relabelled": (tees, 0.45, [], [tees, shirts]),
        "rules_agree_unlabelled": (jeans, 0.95, [jeans, tees], []),
        "none_fits": (tees, 0.60, [shirts], [None]),
        "label_corrected": (shirts, 0.70, [], [jeans, shirts]),
        "correction_undone": (tees, 0.55, [], [tees, (shirts, "undone")]),
    }
    base = timezone.now() - timedelta(days=1)
    for name, (predicted, confidence, rule_categories, labels) in spec.items():
        product = products[name]
        PredictionFactory(model_version=version, product=product, category=predicted, confidence=confidence,
                          top_k=[[predicted.id, confidence], [jeans.id if predicted != jeans else tees.id, 0.1]])
        for rule_category in rule_categories:
            RuleLabel.objects.create(product=product, category=rule_category,
                                     rule=LegacyRuleFactory(category=rule_category))
        for minutes, label_category in enumerate(labels):
            label_category, undone = label_category if isinstance(label_category, tuple) else (label_category, "")
            label = LabelFactory(product=product, category=label_category, undone=bool(undone))
            label.created_at = base + timedelta(minutes=minutes)  # auto_now_add: set the order explicitly
            label.save(update_fields=["created_at"])
    PredictionFactory(model_version=other_version, product=products["agrees"], category=jeans, confidence=0.1)
    return {"version": version, "other": other_version, "products": products, **tree}


def _names(qs, predictions) -> set[str]:
    by_id = {p.id: name for name, p in predictions["products"].items()}
    return {by_id[pid] for pid in qs.values_list("product_id", flat=True)}


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, {"agrees", "rules_and_label_differ", "relabelled", "rules_agree_unlabelled", "none_fits",
          "label_corrected", "correction_undone"}),
    ({"below": 0.5}, {"agrees", "relabelled"}),
    ({"rules": "disagrees"}, {"rules_and_label_differ", "none_fits"}),
    ({"rules": "agrees"}, {"agrees", "rules_agree_unlabelled"}),
    ({"label": "disagrees"}, {"rules_and_label_differ", "relabelled", "none_fits"}),
    ({"label": "agrees"}, {"agrees", "label_corrected", "correction_undone"}),
    ({"q": "SHIRT"}, {"agrees", "rules_and_label_differ", "label_corrected"}),
    ({"below": 0.65, "rules": "disagrees", "label": "disagrees"}, {"none_fits"}),
])
def test_prediction_filters_select_exactly_the_right_products(predictions, filters, expected):
    qs = prediction_list(filters=PredictionFilters(version_id=predictions["version"].id, **filters))

    assert _names(qs, predictions) == expected


def test_the_category_filter_selects_a_subtree_of_the_predicted_category(predictions):
    version_id, topwear = predictions["version"].id, predictions["shirts"].parent

    in_topwear = prediction_list(filters=PredictionFilters(version_id=version_id, category_id=topwear.id))
    in_shirts = prediction_list(filters=PredictionFilters(version_id=version_id, category_id=predictions["shirts"].id))

    assert _names(in_topwear, predictions) == {"agrees", "rules_and_label_differ", "relabelled", "none_fits",
                                               "label_corrected", "correction_undone"}
    assert _names(in_shirts, predictions) == {"agrees", "rules_and_label_differ", "label_corrected"}


def test_keyset_pages_walk_every_prediction_in_confidence_order(predictions):
    PredictionFactory(model_version=predictions["version"], category=None, confidence=None)
    filters = PredictionFilters(version_id=predictions["version"].id)

    seen, after = [], None
    while True:
        page = prediction_page(filters=filters, after=after, size=2)
        seen.extend(row.prediction.confidence for row in page.rows)
        if page.next_cursor is None:
            break
        after = Cursor.decode(page.next_cursor.encode())

    assert seen == [0.30, 0.45, 0.55, 0.60, 0.70, 0.80, 0.95, None]
    descending = prediction_page(filters=PredictionFilters(version_id=predictions["version"].id, descending=True),
                                 size=10)
    assert [row.prediction.confidence for row in descending.rows] == [0.95, 0.80, 0.70, 0.60, 0.55, 0.45, 0.30, None]


def test_prediction_rows_carry_top_k_rules_and_the_newest_label(predictions):
    page = prediction_page(filters=PredictionFilters(version_id=predictions["version"].id, label="disagrees"))

    rows = {row.product.title: row for row in page.rows}
    relabelled = rows["Plain tee"]
    assert [(ref.name, prob) for ref, prob in relabelled.top] == [("Tshirts", 0.45), ("Jeans", 0.1)]
    assert relabelled.label_category.name == "Shirts" and relabelled.disagrees_label
    assert not relabelled.disagrees_rules and relabelled.rule_categories == []
    assert rows["Odd thing"].labelled and rows["Odd thing"].label_category is None
    assert [ref.name for ref in rows["Oxford shirt"].rule_categories] == ["Tshirts"]


def test_predictions_page_shows_the_active_version_and_filters_with_htmx(client, reviewer, predictions):
    page = client.get("/review/predictions/")
    partial = client.get("/review/predictions/", {"rules": "disagrees"}, HTTP_HX_REQUEST="true")

    html = page.content.decode()
    assert page.status_code == 200 and "7 predictions match" in html
    assert "Linen shirt" in html and "≠ rules" in html and "≠ label" in html and "none fits" in html
    assert 'hx-push-url="true"' in html and 'action="/review/predictions/"' in html
    assert b"<html" not in partial.content
    shown = set(re.findall(r'data-product="(\d+)"', partial.content.decode()))
    assert shown == {str(predictions["products"][n].id) for n in ("rules_and_label_differ", "none_fits")}


def test_predictions_page_paginates_with_a_next_link(client, reviewer, predictions, monkeypatch):
    monkeypatch.setattr("classifier.views.PREDICTIONS_PER_PAGE", 4)

    first = client.get("/review/predictions/", {"below": "0.9"})
    next_href = re.search(r'href="\?([^"]*after=[^"]*)"', first.content.decode()).group(1).replace("&amp;", "&")
    second = client.get(f"/review/predictions/?{next_href}")

    assert len(re.findall(r'data-product="', first.content.decode())) == 4
    assert "below=0.9" in next_href
    assert len(re.findall(r'data-product="', second.content.decode())) == 2
    assert b"back to the first page" in second.content


def test_predictions_of_another_version_and_an_unknown_one(client, reviewer, predictions):
    other = client.get("/review/predictions/", {"version": predictions["other"].id})
    unknown = client.get("/review/predictions/", {"version": 999999})

    assert re.findall(r'data-product="(\d+)"', other.content.decode()) == [str(predictions["products"]["agrees"].id)]
    assert unknown.status_code == 404 and b"There is no model version 999999" in unknown.content


def test_without_an_active_version_the_page_offers_the_existing_ones(client, reviewer):
    version = ModelVersionFactory(name="wd-old")

    html = client.get("/review/predictions/").content.decode()

    assert "No model version is active yet" in html and f"?version={version.id}" in html


# ------------------------------------------------------------------------------------------------ curves


def test_learning_curves_group_runs_by_setting(client, reviewer, tree):
    def run(setting, labels, accuracy=None, rule_accuracy=None, **kwargs):
        metrics = {}
        if accuracy is not None:
            metrics["ground_truth"] = {"exclusive": {"accuracy": accuracy}}
        if rule_accuracy is not None:
            metrics["rule_test"] = {"exclusive": {"accuracy": rule_accuracy}}
        return TrainRunFactory(params={"setting": setting} if setting else {}, metrics=metrics,
                               data_counts={"exclusive_labels": labels}, **kwargs)

    run("random", 100, 0.5)
    run("random", 200, 0.6)
    run("margin", 100, 0.55)
    run("margin", 200, None, rule_accuracy=0.7)   # no ground truth yet: the rule test set stands in
    run("margin", 300, 0.75, status="failed")      # failed runs are not plotted
    run(None, 50, 0.4)

    response = client.get("/review/curves/")

    curves = dict(response.context["curves"])
    assert {name: [(p.labels, p.accuracy) for p in points] for name, points in curves.items()} == {
        "manual": [(50, 0.4)], "margin": [(100, 0.55), (200, 0.7)], "random": [(100, 0.5), (200, 0.6)]}
    chart = next(s for s in _svgs(response) if s.get("aria-label", "").startswith("Test accuracy vs human labels"))
    assert _series(chart) == {"manual": 1, "margin": 2, "random": 2}


def test_simulation_csvs_are_plotted_and_bad_files_named(client, reviewer, settings):
    folder = settings.ARTEFACT_ROOT / "simulations"
    folder.mkdir(parents=True)
    (folder / "good.csv").write_text(  # the columns simulate_active_learning writes
        "strategy,seed,round,labels,accuracy,macro_f1,seconds\n"
        "random,0,0,100,0.50,0.4,1.0\nrandom,1,0,100,0.60,0.4,1.0\nrandom,0,1,200,0.70,0.5,1.0\n"
        "margin,0,0,100,0.55,0.4,1.0\nmargin,0,1,200,nan,0.5,1.0\nmargin,1,1,200,0.80,0.6,1.0\n"
        "margin,1,2,300,oops,0.6,1.0\n")
    (folder / "curves.png").write_bytes(b"\x89PNG")  # the command's plot beside it is not a CSV: ignored
    (folder / "broken.csv").write_text("strategy,n,acc\nrandom,1,2\n")
    (folder / "empty.csv").write_text("")

    response = client.get("/review/curves/")

    files = {f.name: f for f in response.context["simulations"]}
    good = files["good.csv"]
    assert {name: [(p.labels, round(p.accuracy, 6)) for p in points] for name, points in good.series.items()} == {
        "margin": [(100, 0.55), (200, 0.8)], "random": [(100, 0.55), (200, 0.7)]}
    assert (good.rows_used, good.rows_skipped, good.repeats, good.error) == (5, 2, 2, "")
    assert "missing columns labels, accuracy" in files["broken.csv"].error
    assert files["empty.csv"].error
    html = response.content.decode()
    assert "broken.csv</code>: missing columns labels, accuracy" in html
    chart = next(s for s in _svgs(response) if "good.csv" in s.get("aria-label", ""))
    assert _series(chart) == {"margin": 2, "random": 2}


def test_curves_show_the_active_versions_most_confused_pairs(client, reviewer, tree):
    run = TrainRunFactory(metrics={"ground_truth": _report(tree)})
    ModelVersionFactory(train_run=run, is_active=True)

    response = client.get("/review/curves/")

    chart = next(s for s in _svgs(response) if s.get("aria-label", "").startswith("Most confused pairs"))
    bars = [g for g in chart.iter(f"{NS}g") if g.get("class") == "bar"]
    assert len(bars) == 2 and "Tshirts → Shirts" in "".join(bars[0].itertext())


def test_json_helpers_tolerate_missing_keys_and_nan():
    assert common.json_at({"a": {"b": 1}}, "a.b") == 1
    assert common.json_at({"a": None}, "a.b") is None
    assert common.number(float("nan")) is None and common.number(True) is None
    assert common.duration_text(3725) == "1 h 02 min"
