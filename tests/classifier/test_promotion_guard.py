"""The promotion guard: a new version must not be worse than the active one, nor make the catalogue worse."""
from __future__ import annotations

import pytest

from classifier.models import ModelVersion, PromotionOutcome, TrainRun
from classifier.services.promotion import (
    PromotionRefused,
    mcnemar_worse_p,
    model_version_promote,
    train_run_promote_forced,
)
from labelapp.catalogue.models import CategorySource, RuleLabel, SourceTrust, Split, TrustKind
from tests.factories import (
    LabelFactory,
    LegacyRuleFactory,
    ModelVersionFactory,
    PredictionFactory,
    ProductFactory,
    category,
)

pytestmark = pytest.mark.django_db


def test_mcnemar_by_hand():
    assert mcnemar_worse_p(only_active_right=0, only_new_right=0) == 1.0
    assert mcnemar_worse_p(only_active_right=5, only_new_right=0) == pytest.approx(1 / 32)
    assert mcnemar_worse_p(only_active_right=3, only_new_right=3) == pytest.approx(42 / 64)
    assert mcnemar_worse_p(only_active_right=0, only_new_right=4) == 1.0


@pytest.fixture
def ground_truth():
    """Twelve test products labelled Shirts, each also named Shirts by a legacy rule."""
    shirts, jeans = category("Apparel > Shirts", exclusive=True), category("Apparel > Jeans", exclusive=True)
    rule = LegacyRuleFactory(category=shirts)
    products = []
    for _ in range(12):
        product = ProductFactory(split=Split.TEST)
        LabelFactory(product=product, category=shirts)
        RuleLabel.objects.create(product=product, category=shirts, rule=rule)
        products.append(product)
    return {"shirts": shirts, "jeans": jeans, "rule": rule, "products": products}


def _version(products, *, right: int, truth, wrong, active: bool = False, measured: bool = False) -> ModelVersion:
    version = ModelVersionFactory(is_active=active, precision_measured=measured, predictions_count=len(products),
                                  artefact_path="/artefacts/kept")
    for index, product in enumerate(products):
        guess = truth if index < right else wrong
        PredictionFactory(model_version=version, product=product, category=guess, confidence=0.95,
                          top_k=[[guess.pk, 0.95]])
    return version


def test_a_version_worse_than_the_active_one_beyond_noise_is_blocked_and_a_reviewer_can_force_it(ground_truth):
    products, shirts, jeans = ground_truth["products"], ground_truth["shirts"], ground_truth["jeans"]
    active = _version(products, right=12, truth=shirts, wrong=jeans, active=True)
    worse = _version(products, right=4, truth=shirts, wrong=jeans)

    outcome = model_version_promote(version=worse)

    assert outcome == PromotionOutcome.BLOCKED
    assert ModelVersion.objects.get(is_active=True) == active
    run = TrainRun.objects.get(id=worse.train_run_id)
    assert "worse than" in run.promotion_reason and "McNemar" in run.promotion_reason
    details = run.metrics["promotion"]
    assert details["models"]["only_active_right"] == 8 and details["models"]["p_worse"] < 0.05
    assert details["test"].startswith("McNemar's exact test")

    TrainRun.objects.filter(id=run.id).update(outcome=outcome)
    assert train_run_promote_forced(run=run) == PromotionOutcome.FORCED
    assert ModelVersion.objects.get(is_active=True) == worse
    run.refresh_from_db()
    assert run.outcome == PromotionOutcome.FORCED and run.promotion_reason.startswith("forced by")


def test_a_slightly_worse_version_within_noise_is_promoted(ground_truth):
    products, shirts, jeans = ground_truth["products"], ground_truth["shirts"], ground_truth["jeans"]
    _version(products, right=12, truth=shirts, wrong=jeans, active=True)
    close = _version(products, right=10, truth=shirts, wrong=jeans)

    assert model_version_promote(version=close) == PromotionOutcome.PROMOTED  # 2 discordant pairs: p = 0.25
    assert ModelVersion.objects.get(is_active=True) == close


def test_a_version_that_would_make_the_catalogue_worse_is_blocked(ground_truth):
    products, shirts, jeans = ground_truth["products"], ground_truth["shirts"], ground_truth["jeans"]
    # A confident, measured model that is wrong on most products would replace rules measured less precise.
    for product in ProductFactory.create_batch(30, split=Split.DEV):
        LabelFactory(product=product, category=jeans)
        RuleLabel.objects.create(product=product, category=shirts, rule=ground_truth["rule"])
    overconfident = _version(products, right=2, truth=shirts, wrong=jeans, measured=True)

    outcome = model_version_promote(version=overconfident)

    assert outcome == PromotionOutcome.BLOCKED
    assert not ModelVersion.objects.filter(is_active=True).exists()
    catalogue = TrainRun.objects.get(id=overconfident.train_run_id).metrics["promotion"]["catalogue"]
    assert catalogue["before"] == 1.0 and catalogue["after"] == pytest.approx(2 / 12)
    assert SourceTrust.objects.get(kind=TrustKind.RULE).precision < 0.95  # measured on the dev labels first
    assert {p.category_source for p in type(products[0]).objects.filter(split=Split.TEST)} == {CategorySource.LABEL}


def test_forcing_a_run_without_a_version_is_refused(ground_truth):
    run = ModelVersionFactory(artefact_path="", predictions_count=0).train_run

    with pytest.raises(PromotionRefused):
        train_run_promote_forced(run=run)


def test_the_run_page_and_the_api_show_the_decision_and_a_reviewer_forces_it(ground_truth, client, api_client,
                                                                            make_user):
    from labelapp.common.roles import REVIEWER

    products, shirts, jeans = ground_truth["products"], ground_truth["shirts"], ground_truth["jeans"]
    _version(products, right=12, truth=shirts, wrong=jeans, active=True)
    worse = _version(products, right=4, truth=shirts, wrong=jeans)
    TrainRun.objects.filter(id=worse.train_run_id).update(outcome=model_version_promote(version=worse),
                                                         status="succeeded")
    reviewer = make_user("rev", REVIEWER)
    client.force_login(reviewer)
    api_client.force_authenticate(reviewer)

    page = client.get(f"/review/runs/{worse.train_run_id}/").content.decode()
    detail = api_client.get(f"/api/v1/train-runs/{worse.train_run_id}/").json()

    assert "Promotion decision" in page and "McNemar" in page and "Promote anyway" in page
    assert detail["outcome"] == "blocked" and "worse than" in detail["promotion_reason"]
    assert detail["metrics"]["promotion"]["models"]["only_active_right"] == 8

    forced = api_client.post(f"/api/v1/train-runs/{worse.train_run_id}/promote/")
    assert forced.status_code == 200 and forced.json()["outcome"] == "forced"
    assert ModelVersion.objects.get(is_active=True) == worse
    assert "forced by rev" in forced.json()["promotion_reason"]
    assert api_client.post("/api/v1/train-runs/999999/promote/").status_code == 404


def test_the_trust_page_shows_rules_feeds_and_the_model_reliability(ground_truth, client, make_user):
    from labelapp.catalogue.services.trust import trust_refresh
    from labelapp.common.roles import REVIEWER

    for product in ProductFactory.create_batch(4, split=Split.DEV, source="shop", feed_category=ground_truth["shirts"]):
        LabelFactory(product=product, category=ground_truth["shirts"])
        RuleLabel.objects.create(product=product, category=ground_truth["shirts"], rule=ground_truth["rule"])
    trust_refresh()
    version = ModelVersionFactory(is_active=True)
    TrainRun.objects.filter(id=version.train_run_id).update(metrics={"calibration": {
        "temperature": 1.7, "n": 40, "fitted_on": "human labels", "measured": True,
        "test": {"n": 10, "ece_before": 0.2, "ece_after": 0.05,
                 "reliability": [{"low": 0.8, "high": 0.9, "count": 10, "confidence": 0.85, "accuracy": 0.8}],
                 "reliability_before": [{"low": 0.9, "high": 1.0, "count": 10, "confidence": 0.97, "accuracy": 0.8}]}}})
    client.force_login(make_user("rev", REVIEWER))

    html = client.get("/review/trust/").content.decode()

    assert ground_truth["rule"].name in html and "0.51–1.00" in html  # 4 of 4 right: the Wilson interval
    assert "shop" in html and "agree" in html
    assert "Reliability" in html and "calibrated" in html and "before calibration" in html
    assert client.get("/review/trust/").status_code == 200
