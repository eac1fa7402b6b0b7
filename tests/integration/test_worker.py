"""Tasks run by a real worker process over the real broker."""
import pytest

from labelapp.models import RuleLabel
from labelapp.tasks import rules_apply_task
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
