"""Onboarding end to end in a real browser, with a real Celery worker: a real Myntra feed (the first 300 rows of
../shared's styles.csv) uploaded, previewed, its mapping fixed, imported, given a proposed taxonomy and rules, a
first model trained, a round opened, and a product to label. Screenshots go to a temporary folder, or to the
README's docs/onboarding/ when ONBOARDING_SCREENSHOTS=docs/onboarding is set (tests never write to the checkout
otherwise)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from classifier.models import ModelVersion
from labelapp.catalogue.models import Product
from labelapp.common.roles import LABELLER, REVIEWER
from tests.integration.conftest import celery_worker_env, celery_worker_pool, celery_worker_process  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
STYLES = REPO.parent / "shared" / "datasets" / "myntra-fashion" / "styles.csv"
ROWS = 300
JOB_TIMEOUT_MS = 150_000


@pytest.fixture
def feed(tmp_path) -> Path:
    if not STYLES.exists():
        pytest.skip(f"{STYLES} is absent (../shared holds the datasets)")
    with STYLES.open(encoding="utf-8") as handle:
        lines = [next(handle) for _ in range(ROWS + 1)]
    path = tmp_path / "myntra-styles.csv"
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("ONBOARDING_SCREENSHOTS") or tmp_path / "shots")
    folder = folder if folder.is_absolute() else REPO / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shot(page, folder: Path, name: str, *, section: str) -> None:
    """Screenshot the viewport with `section` (an element id) at its top."""
    page.evaluate("id => document.getElementById(id).scrollIntoView()", section)
    page.screenshot(path=str(folder / f"{name}.png"))


def test_a_reviewer_onboards_a_real_feed_from_upload_to_a_labelling_round(
        page, live_server, login, make_user, feed, shots, celery_worker_process):  # noqa: F811
    make_user("onboarder", REVIEWER, LABELLER)
    login("onboarder")
    page.click("nav >> text=Onboarding")

    # 1. Feed: upload, preview with the importer's defaults, then map the category levels (the defaults find none).
    page.set_input_files("input[name=file]", str(feed))
    page.click("text=Upload and preview")
    page.wait_for_url(re.compile(r"upload=[0-9a-f]{32}"))
    assert page.locator("select[name=field_title]").input_value() == "productDisplayName"
    assert page.locator("#paths-distinct").inner_text() == "0"
    for level, column in enumerate(("masterCategory", "subCategory", "articleType"), start=1):
        page.select_option(f"select[name=category_level_{level}]", column)
    page.wait_for_selector(".top-paths >> text=Apparel > Topwear > Shirts")
    page.locator("#mapping-form input[name=source]").fill("myntra")
    _shot(page, shots, "1-preview", section="mapping")

    # 2. Import on the worker, with progress, then its report.
    page.click("#import-button")
    page.wait_for_url(re.compile(r"source=myntra"))
    page.wait_for_selector("#rows-created", timeout=JOB_TIMEOUT_MS)
    created = int(page.locator("#rows-created").inner_text())
    assert created >= ROWS - 30 and Product.objects.filter(source="myntra").count() == created
    _shot(page, shots, "2-import", section="import")

    # 3. Taxonomy proposed from the imported paths and applied; the feed's paths matched to it.
    page.click("#propose-taxonomy")
    page.click("text=Apply to the category tree")
    page.click("text=Apply: create")
    page.wait_for_selector("text=Proposed taxonomy applied")
    page.goto(f"{live_server.url}/onboarding/?source=myntra#taxonomy")
    page.click("#match-button")
    page.wait_for_url(re.compile(r"#taxonomy"))
    assert Product.objects.filter(source="myntra").exclude(feed_category=None).count() > created // 2

    # 4. Rules from the category names, applied.
    page.click("#rules-button")
    page.wait_for_selector("text=rules written from the category names")
    _shot(page, shots, "3-rules", section="taxonomy")

    # 5. A first model (logreg, few epochs), trained on the worker with progress, promoted.
    page.fill("#model input[name=epochs]", "3")
    page.click("#train-button")
    page.wait_for_selector("#model-outcome", timeout=JOB_TIMEOUT_MS)
    assert page.locator("#model-outcome").inner_text() == "promoted"
    assert ModelVersion.objects.filter(is_active=True).exists()
    _shot(page, shots, "4-model", section="model")

    # 6. A labelling round, filled by the worker, then a product to label.
    page.click("#round-button")
    page.wait_for_selector("#start-labelling", timeout=JOB_TIMEOUT_MS)
    _shot(page, shots, "5-round", section="round")
    page.click("#start-labelling")
    page.wait_for_url(re.compile(r"/label/$"))
    title = page.locator("#current .label-title")
    title.wait_for(timeout=20_000)
    assert Product.objects.filter(source="myntra", title=title.inner_text()).exists()
    _shot(page, shots, "6-label", section="current")
