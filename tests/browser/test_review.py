"""A reviewer follows a train run live and filters the active model's predictions in a real browser."""
import pytest

from classifier.models import TrainRun
from labelapp.catalogue.models import RuleLabel
from labelapp.common.roles import REVIEWER
from tests.factories import (
    LegacyRuleFactory,
    ModelVersionFactory,
    PredictionFactory,
    ProductFactory,
    TrainRunFactory,
    category,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_runs_table_follows_a_running_run_until_it_finishes(page, live_server, login, make_user, monkeypatch):
    monkeypatch.setattr("classifier.views.POLL_SECONDS", 1)
    run = TrainRunFactory(status="running", stage="train", progress_percent=30, progress_message="epoch 3 of 10")
    make_user("rev", REVIEWER)

    login("rev")
    page.click("text=Models")
    assert "epoch 3 of 10" in page.locator("#run-table").inner_text()
    TrainRun.objects.filter(pk=run.pk).update(status="succeeded", stage="done", progress_percent=100,
                                              progress_message="")
    # The poll swaps the table in place, then stops: the finished table carries no trigger.
    page.wait_for_function("!document.querySelector('#run-table').hasAttribute('hx-trigger')")

    assert "succeeded" in page.locator("#run-table").inner_text()
    assert "epoch 3 of 10" not in page.locator("#run-table").inner_text()


def test_reviewer_filters_predictions_with_htmx(page, live_server, login, make_user):
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    tees = category("Apparel > Topwear > Tshirts", exclusive=True)
    version = ModelVersionFactory(is_active=True)
    agreeing, disagreeing = ProductFactory(title="Linen shirt"), ProductFactory(title="Striped tee")
    for product, predicted, ruled in ((agreeing, shirts, shirts), (disagreeing, shirts, tees)):
        PredictionFactory(model_version=version, product=product, category=predicted, confidence=0.6)
        RuleLabel.objects.create(product=product, category=ruled, rule=LegacyRuleFactory(category=ruled))
    make_user("rev", REVIEWER)

    login("rev")
    page.goto(f"{live_server.url}/review/predictions/")
    assert page.locator("table.predictions tbody tr").count() == 2
    page.select_option("select[name=rules]", "disagrees")
    page.wait_for_function("document.querySelectorAll('table.predictions tbody tr').length === 1")

    assert "rules=disagrees" in page.url
    assert "Striped tee" in page.locator("table.predictions").inner_text()
