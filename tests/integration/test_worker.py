"""Tasks run by a real worker process over the real broker."""
import pytest

from labelapp.catalogue.models import RuleLabel
from labelapp.catalogue.tasks import rules_apply_task
from tests.factories import LegacyRuleFactory, ProductFactory, category

pytestmark = pytest.mark.integration


def test_rules_are_applied_by_a_task_on_a_real_worker(celery_worker_process):
    trousers = category("Apparel > Bottomwear > Trousers", exclusive=True)
    LegacyRuleFactory(name="trousers", category=trousers,
                      conditions=[{"field": "title", "op": "contains_word", "value": "trousers"}])
    hit = ProductFactory(title="Grey Wool Trousers")
    ProductFactory(title="Blue Denim Jacket")

    result = rules_apply_task.apply_async(kwargs={}, queue=celery_worker_process["queue"])
    counts = result.get(timeout=60)

    assert counts["products_scanned"] == 2
    assert list(RuleLabel.objects.values_list("product_id", "category_id")) == [(hit.id, trousers.id)]
    hit.refresh_from_db()
    assert (hit.category_id, hit.category_source) == (trousers.id, "rule")
    assert "rules_apply_task" in celery_worker_process["log"].read_text()


def test_an_uploaded_feed_is_imported_by_the_worker_then_rules_applied(celery_worker_process, api_client,
                                                                       make_user, tmp_path):
    import time

    from django.core.files.uploadedfile import SimpleUploadedFile

    from labelapp.catalogue.models import ImportRun, Product

    trousers = category("Apparel > Bottomwear > Trousers", exclusive=True)
    LegacyRuleFactory(name="trousers", category=trousers,
                      conditions=[{"field": "title", "op": "contains_word", "value": "trousers"}])
    api_client.force_authenticate(make_user("rev", "reviewer"))
    feed = b"sku;name;category\n1;Grey <b>Wool</b> Trousers;Apparel // Bottomwear // Trousers\n2;;Nothing\n"

    response = api_client.post("/api/v1/imports/", {
        "kind": "products", "source": "shop-a", "file": SimpleUploadedFile("feed.csv", feed)}, format="multipart")
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while not ImportRun.objects.get(pk=run_id).is_finished:
        assert time.monotonic() < deadline, celery_worker_process["log"].read_text()[-3000:]
        time.sleep(0.2)
    run = ImportRun.objects.get(pk=run_id)
    assert (run.status, run.rows_total, run.rows_created, run.rows_rejected) == ("succeeded", 2, 1, 1)
    assert run.row_issues.get().reason.startswith("missing title")
    product = Product.objects.get(source="shop-a", external_id="1")
    assert product.title == "Grey Wool Trousers"
    # The follow-up task applies the rules to the imported products.
    while not product.rule_labels.exists():
        assert time.monotonic() < deadline, celery_worker_process["log"].read_text()[-3000:]
        time.sleep(0.2)
    assert product.rule_labels.get().category_id == trousers.id
