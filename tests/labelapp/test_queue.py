"""The labelling queue: leases, submit, skip, undo and lease expiry, straight through the services."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from classifier.services.promotion import model_categories_publish
from labelapp.catalogue.models import CategorySource, Label, RuleLabel
from labelapp.catalogue.services.labels import label_create
from labelapp.catalogue.services.product_categories import product_category_recompute
from labelapp.workflow.models import QueueItem, QueueItemStatus
from labelapp.workflow.selectors import queue_item_token
from labelapp.workflow.services.rounds import labelling_round_close
from labelapp.workflow.services.queue import (
    LeaseLost,
    SubmitOutdated,
    label_undo_last,
    queue_item_lease_next,
    queue_item_skip,
    queue_item_submit,
    queue_items_lease,
    queue_leases_expire,
)
from tests.factories import (
    LegacyRuleFactory,
    ModelVersionFactory,
    PredictionFactory,
    category,
    labelling_round_with_items,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def shirts():
    return category("Apparel > Topwear > Shirts", exclusive=True)


@pytest.fixture
def jeans():
    return category("Apparel > Bottomwear > Jeans", exclusive=True)


def _expire(item: QueueItem) -> None:
    QueueItem.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def test_labellers_lease_items_in_queue_order_and_a_reload_gives_the_same_item(make_user):
    round, items = labelling_round_with_items(4)
    ann, bob = make_user("ann"), make_user("bob")

    first = queue_item_lease_next(user=ann, round=round)
    again = queue_item_lease_next(user=ann, round=round)
    bobs = queue_item_lease_next(user=bob, round=round)

    assert first.pk == again.pk == items[0].pk
    assert bobs.pk == items[1].pk
    first.refresh_from_db()
    assert first.status == QueueItemStatus.LEASED and first.leased_to == ann
    assert first.lease_expires_at > timezone.now() + timedelta(seconds=590)


def test_a_labeller_holds_the_shown_item_and_a_preloaded_next_one(make_user):
    round, items = labelling_round_with_items(5)
    ann, bob = make_user("ann"), make_user("bob")

    held = queue_items_lease(user=ann, round=round, count=2)
    held_again = queue_items_lease(user=ann, round=round, count=2)
    bobs = queue_items_lease(user=bob, round=round, count=2)

    assert [item.pk for item in held] == [item.pk for item in held_again] == [items[0].pk, items[1].pk]
    assert [item.pk for item in bobs] == [items[2].pk, items[3].pk]
    assert held[0].product.title == items[0].product.title  # the product comes along for the card


def test_a_claim_leases_exactly_what_is_missing_however_long_the_queue(make_user):
    round, items = labelling_round_with_items(40)
    ann = make_user("ann")

    queue_items_lease(user=ann, round=round, count=2)
    queue_item_skip(item_id=items[0].pk, user=ann)
    queue_items_lease(user=ann, round=round, count=2)

    assert list(QueueItem.objects.filter(status=QueueItemStatus.LEASED).order_by("position")
                .values_list("position", flat=True)) == [1, 2]


def test_lease_next_uses_the_open_round_and_returns_none_when_the_queue_is_empty(make_user):
    round, items = labelling_round_with_items(1)
    ann, bob = make_user("ann"), make_user("bob")

    assert queue_item_lease_next(user=ann).pk == items[0].pk
    assert queue_item_lease_next(user=bob, round=round) is None


def test_an_expired_lease_goes_to_the_next_labeller(make_user):
    round, items = labelling_round_with_items(2)
    ann, bob = make_user("ann"), make_user("bob")
    queue_item_lease_next(user=ann, round=round)
    _expire(items[0])

    assert queue_item_lease_next(user=bob, round=round).pk == items[0].pk


def test_submit_records_the_label_with_round_strategy_model_and_time(make_user, shirts):
    version = ModelVersionFactory()
    round, items = labelling_round_with_items(2, round_kwargs={"model_version": version})
    QueueItem.objects.filter(pk=items[0].pk).update(strategy="margin")
    ann = make_user("ann")
    item = queue_item_lease_next(user=ann, round=round)

    label = queue_item_submit(item_id=item.pk, user=ann, category=shirts, time_spent_ms=4200)

    assert (label.category, label.labeller, label.strategy, label.context.round, label.context.model_version_id,
            label.context.time_spent_ms) == (shirts, ann, "margin", round, version.id, 4200)
    item.refresh_from_db()
    assert (item.status, item.label, item.lease_expires_at, item.flagged) == (QueueItemStatus.DONE, label, None, False)
    assert item.done_at is not None
    product = item.product
    product.refresh_from_db()
    assert (product.category, product.category_source) == (shirts, CategorySource.LABEL)


def test_a_double_submit_returns_the_first_label_and_writes_no_second(make_user, shirts, jeans):
    round, items = labelling_round_with_items(2)
    ann = make_user("ann")
    item = queue_item_lease_next(user=ann, round=round)
    token = queue_item_token(item)

    first = queue_item_submit(item_id=item.pk, user=ann, category=shirts, time_spent_ms=100, token=token)
    second = queue_item_submit(item_id=item.pk, user=ann, category=jeans, time_spent_ms=900, token=token)

    assert first.pk == second.pk
    assert Label.objects.filter(product=item.product).count() == 1


def test_submitting_an_item_someone_else_holds_or_labelled_raises_lease_lost(make_user, shirts):
    round, items = labelling_round_with_items(2)
    ann, bob = make_user("ann"), make_user("bob")
    item = queue_item_lease_next(user=ann, round=round)

    with pytest.raises(LeaseLost, match="Another labeller holds this product"):
        queue_item_submit(item_id=item.pk, user=bob, category=shirts, time_spent_ms=None)
    queue_item_submit(item_id=item.pk, user=ann, category=shirts, time_spent_ms=None)
    with pytest.raises(LeaseLost, match="already labelled"):
        queue_item_submit(item_id=item.pk, user=bob, category=shirts, time_spent_ms=None)
    assert Label.objects.count() == 1


def test_an_expired_lease_can_still_be_submitted_until_someone_else_takes_it(make_user, shirts):
    round, items = labelling_round_with_items(2)
    ann, bob = make_user("ann"), make_user("bob")
    mine = queue_items_lease(user=ann, round=round, count=2)
    _expire(mine[0])
    _expire(mine[1])
    queue_leases_expire()  # the beat task returned both to the queue…
    queue_item_lease_next(user=bob, round=round)  # …and bob took the first

    assert queue_item_submit(item_id=mine[1].pk, user=ann, category=shirts, time_spent_ms=1).labeller == ann
    with pytest.raises(LeaseLost):
        queue_item_submit(item_id=mine[0].pk, user=ann, category=shirts, time_spent_ms=1)


def test_an_item_someone_else_skipped_cannot_be_submitted_without_leasing_it(make_user, shirts):
    round, items = labelling_round_with_items(3)
    ann, bob = make_user("ann"), make_user("bob")
    skipped = queue_item_lease_next(user=ann, round=round)
    queue_item_skip(item_id=skipped.pk, user=ann)  # pending again, held by nobody

    with pytest.raises(LeaseLost, match="You do not hold this product"):
        queue_item_submit(item_id=skipped.pk, user=bob, category=shirts, time_spent_ms=1)
    with pytest.raises(LeaseLost, match="You do not hold this product"):
        queue_item_submit(item_id=skipped.pk, user=ann, category=shirts, time_spent_ms=1)  # the skipper neither
    assert not Label.objects.exists()
    assert QueueItem.objects.get(pk=skipped.pk).status == QueueItemStatus.PENDING
    # Leased the ordinary way, it can be labelled.
    assert queue_item_lease_next(user=bob, round=round).pk == skipped.pk
    assert queue_item_submit(item_id=skipped.pk, user=bob, category=shirts, time_spent_ms=1).labeller == bob


def test_an_item_nobody_ever_leased_cannot_be_submitted(make_user, shirts):
    round, items = labelling_round_with_items(2)
    ann = make_user("ann")

    with pytest.raises(LeaseLost, match="You do not hold this product"):
        queue_item_submit(item_id=items[1].pk, user=ann, category=shirts, time_spent_ms=1)
    assert not Label.objects.exists()


def test_a_late_submit_after_the_round_closed_still_counts_for_the_lease_holder(make_user, shirts, sent_tasks):
    round, items = labelling_round_with_items(2)
    ann, bob = make_user("ann"), make_user("bob")
    mine = queue_item_lease_next(user=ann, round=round)
    labelling_round_close(round_id=round.pk, reason="test")  # releases the leases

    assert queue_item_submit(item_id=mine.pk, user=ann, category=shirts, time_spent_ms=1).labeller == ann
    with pytest.raises(LeaseLost):
        queue_item_submit(item_id=items[1].pk, user=bob, category=shirts, time_spent_ms=1)


def test_none_fits_is_recorded_and_keeps_the_products_category(make_user, shirts):
    round, items = labelling_round_with_items(1, feed_category=shirts, category=shirts, category_source="feed")
    ann = make_user("ann")
    item = queue_item_lease_next(user=ann, round=round)

    label = queue_item_submit(item_id=item.pk, user=ann, category=None, time_spent_ms=10)

    assert label.category is None
    item.product.refresh_from_db()
    assert (item.product.category, item.product.category_source) == (shirts, "feed")


def test_a_flag_marks_the_item_for_review_with_the_note(make_user, shirts):
    round, items = labelling_round_with_items(1)
    ann = make_user("ann")
    item = queue_item_lease_next(user=ann, round=round)

    label = queue_item_submit(item_id=item.pk, user=ann, category=shirts, time_spent_ms=10, flagged=True,
                              note="photo shows two products")

    item.refresh_from_db()
    assert item.flagged and label.note == "photo shows two products"


def test_the_last_item_done_schedules_closing_the_round(make_user, shirts, sent_tasks,
                                                        django_capture_on_commit_callbacks):
    round, items = labelling_round_with_items(2)
    ann = make_user("ann")
    first, second = queue_items_lease(user=ann, round=round, count=2)

    with django_capture_on_commit_callbacks(execute=True):
        queue_item_submit(item_id=first.pk, user=ann, category=shirts, time_spent_ms=1)
    assert sent_tasks == []
    with django_capture_on_commit_callbacks(execute=True):
        queue_item_submit(item_id=second.pk, user=ann, category=shirts, time_spent_ms=1)

    assert sent_tasks == [("labelapp.workflow.tasks.labelling_round_close_task",
                           {"round_id": round.pk, "reason": "every item labelled"})]


def test_a_skipped_item_goes_to_other_labellers_not_back_to_the_skipper(make_user):
    round, items = labelling_round_with_items(3)
    ann, bob = make_user("ann"), make_user("bob")
    item = queue_item_lease_next(user=ann, round=round)

    skipped = queue_item_skip(item_id=item.pk, user=ann)
    queue_item_skip(item_id=item.pk, user=ann)  # a repeated skip is harmless

    assert (skipped.status, skipped.leased_to, skipped.skipped_by) == (QueueItemStatus.PENDING, None, [ann.pk])
    assert queue_item_lease_next(user=ann, round=round).pk == items[1].pk
    assert queue_item_lease_next(user=bob, round=round).pk == items[0].pk
    with pytest.raises(LeaseLost):
        queue_item_skip(item_id=items[0].pk, user=ann)


def test_undo_takes_back_the_last_label_reverts_the_category_and_releases_the_item(make_user, shirts, jeans):
    rule = LegacyRuleFactory(category=jeans)
    round, items = labelling_round_with_items(2, category=jeans, category_source="rule")
    RuleLabel.objects.create(product=items[0].product, category=jeans, rule=rule)
    ann = make_user("ann")
    item = queue_item_lease_next(user=ann, round=round)
    label = queue_item_submit(item_id=item.pk, user=ann, category=shirts, time_spent_ms=1)

    undone = label_undo_last(user=ann, round=round)

    assert undone.pk == item.pk
    label.refresh_from_db()
    assert label.undone
    product = item.product
    product.refresh_from_db()
    assert (product.category, product.category_source) == (jeans, CategorySource.RULE)
    undone.refresh_from_db()
    assert (undone.status, undone.leased_to, undone.done_at) == (QueueItemStatus.LEASED, ann, None)
    # The same labeller gets it back first, and can label it again.
    assert queue_item_lease_next(user=ann, round=round).pk == item.pk
    relabel = queue_item_submit(item_id=item.pk, user=ann, category=jeans, time_spent_ms=2,
                                token=queue_item_token(undone))
    assert relabel.pk != label.pk and relabel.category == jeans


def test_a_late_retry_of_an_undone_submit_is_refused(make_user, shirts):
    round, items = labelling_round_with_items(1)
    ann = make_user("ann")
    item = queue_item_lease_next(user=ann, round=round)
    token = queue_item_token(item)
    queue_item_submit(item_id=item.pk, user=ann, category=shirts, time_spent_ms=1, token=token)
    label_undo_last(user=ann, round=round)

    with pytest.raises(SubmitOutdated):
        queue_item_submit(item_id=item.pk, user=ann, category=shirts, time_spent_ms=1, token=token)
    assert Label.objects.filter(undone=False).count() == 0


def test_undo_falls_back_to_an_earlier_label_then_the_prediction(make_user, shirts, jeans):
    version = ModelVersionFactory(is_active=True)
    round, items = labelling_round_with_items(2)
    product = items[0].product
    PredictionFactory(model_version=version, product=product, category=jeans, confidence=0.9)
    model_categories_publish(version=version)  # what promotion does: the catalogue learns the model's category
    ann = make_user("ann")
    earlier = label_create(product=product, category=jeans, user=ann)
    item = queue_item_lease_next(user=ann, round=round)
    queue_item_submit(item_id=item.pk, user=ann, category=shirts, time_spent_ms=1)

    label_undo_last(user=ann, round=round)
    product.refresh_from_db()
    assert (product.category, product.category_source) == (jeans, CategorySource.LABEL)

    # Undo walks back through the user's labels of this round only; the earlier label is outside it.
    assert label_undo_last(user=ann, round=round) is None
    earlier.undone = True
    earlier.save()
    product_category_recompute(product=product)
    product.refresh_from_db()
    assert (product.category, product.category_source) == (jeans, CategorySource.PREDICTION)


def test_undo_with_nothing_to_undo_returns_none(make_user):
    round, _ = labelling_round_with_items(1)

    assert label_undo_last(user=make_user("ann"), round=round) is None


def test_expired_leases_return_to_the_queue(make_user):
    round, items = labelling_round_with_items(3)
    ann = make_user("ann")
    held = queue_items_lease(user=ann, round=round, count=2)
    _expire(held[0])

    assert queue_leases_expire() == 1
    states = dict(QueueItem.objects.values_list("pk", "status"))
    assert states == {items[0].pk: "pending", items[1].pk: "leased", items[2].pk: "pending"}


def test_leasing_takes_four_queries_and_a_reload_one(make_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    round, _ = labelling_round_with_items(5)
    ann = make_user("ann")

    def statements() -> list[str]:
        # The test's own transaction turns the claim's atomic block into savepoints: not round trips in production.
        return [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]

    with CaptureQueriesContext(connection) as queries:
        queue_items_lease(user=ann, round=round, count=2)
    assert len(statements()) == 4 and statements()[1].endswith("FOR UPDATE SKIP LOCKED")
    with CaptureQueriesContext(connection) as queries:
        queue_items_lease(user=ann, round=round, count=2)
    assert len(statements()) == 1  # a reload: nothing to claim
