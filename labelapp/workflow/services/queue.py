"""The labelling queue: labellers lease a round's items, label or skip them, and undo their last label.

Lease contract
- An item is held by `leased_to` while `lease_expires_at` is in the future. Claiming selects the first free
  items with `SELECT … FOR UPDATE SKIP LOCKED` and leases them in the same transaction, so concurrent
  labellers (threads, processes or web workers) never claim the same item and never wait on each other.
- An expired lease is free: the next claim by anyone takes it. `queue_leases_expire` (a beat task) also
  returns expired items to PENDING so progress counts stay honest.
- A labeller holds up to two items at once: the one on screen and the next one, preloaded so the page flips
  without a round trip. Reloading the page hands back the same items.
- Submitting needs the lease, or an expired lease nobody else took. A released item (its lease expired and the
  beat task returned it to PENDING, or its round closed) keeps its last holder in `leased_to` until someone
  else claims it, so that holder's late submit still counts. An item the user never held, or gave back with a
  skip, cannot be submitted: it has to be leased first. A submit repeated by the same labeller (double click,
  network retry) returns the label of the first one; `token` (item id and the label the card was shown after)
  rejects a late retry of a submit the labeller has since undone.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Func, Q, Value
from django.utils import timezone

from labelapp.catalogue.models import Category, Label
from labelapp.catalogue.services.labels import label_create, label_undo
from labelapp.common.dispatch import task_send
from labelapp.workflow.models import LabelContext, LabellingRound, QueueItem, QueueItemStatus, RoundStatus
from labelapp.workflow.selectors import queue_item_token

HELD_ITEMS = 2
# What a held item is loaded with: its own state and the product fields a labelling card shows. Loading the
# whole product (raw record, 30 columns) costs more than the rest of a request's queries together.
HELD_FIELDS = ("round_id", "product_id", "strategy", "score", "position", "status", "leased_to_id",
               "lease_expires_at", "label_id", "flagged", "product__source", "product__external_id", "product__title",
               "product__description", "product__brand", "product__category_path", "product__gender",
               "product__image", "product__split")
NOTE_MAX_LENGTH = 500


class QueueError(Exception):
    """A queue action the item's state does not allow; the message says why, in words for the labeller."""


class LeaseLost(QueueError):
    """The item is held or was labelled by someone else."""


class SubmitOutdated(QueueError):
    """The submit is a late copy of one the labeller has since undone."""


class RoundNotOpen(QueueError):
    """The round is not open for labelling."""


def lease_duration() -> timedelta:
    """Return how long a lease lasts (settings.LABELLING_LEASE_SECONDS)."""
    return timedelta(seconds=settings.LABELLING_LEASE_SECONDS)


def queue_items_lease(*, user: AbstractBaseUser, round: LabellingRound, count: int = HELD_ITEMS,
                      lease_seconds: int | None = None) -> list[QueueItem]:
    """Return every item the user holds in the open round, by position, after topping up to `count` leases.

    New leases go to the first PENDING items by position (or LEASED ones whose lease expired) that the user
    has not skipped, claimed with FOR UPDATE SKIP LOCKED (the partial index `queueitem_claim_idx` walks the
    claimable items in position order). Items come with `round` and their product's card fields
    (HELD_FIELDS) loaded. One query when the user holds enough already (a reload), four when claiming.
    """
    if round.status != RoundStatus.OPEN:
        return []
    now = timezone.now()
    held_query = (QueueItem.objects.filter(round=round, status=QueueItemStatus.LEASED, leased_to=user,
                                           lease_expires_at__gt=now)
                  .select_related("product").only(*HELD_FIELDS).order_by("position"))
    held = list(held_query.all())
    missing = count - len(held)
    if missing > 0:
        expires = now + (timedelta(seconds=lease_seconds) if lease_seconds is not None else lease_duration())
        free = (QueueItem.objects.select_for_update(skip_locked=True)
                .filter(round=round)
                .filter(Q(status=QueueItemStatus.PENDING)
                        | Q(status=QueueItemStatus.LEASED, lease_expires_at__lte=now))
                .exclude(skipped_by__contains=[user.pk])
                .order_by("position").values_list("pk", flat=True)[:missing])
        # Two statements, not UPDATE … WHERE id IN (SELECT … LIMIT … SKIP LOCKED): PostgreSQL may run such a
        # subquery once per row, each run skipping the rows the UPDATE already took, and lease more than
        # `missing`. The row locks last until commit, so concurrent claims skip these rows.
        with transaction.atomic():
            claimed = list(free)
            if claimed:
                QueueItem.objects.filter(pk__in=claimed).update(
                    status=QueueItemStatus.LEASED, leased_to=user, lease_expires_at=expires)
        if claimed:
            held = list(held_query.all())
    for item in held:
        item.round = round
    return held


def queue_item_lease_next(*, user: AbstractBaseUser, round: LabellingRound | None = None,
                          lease_seconds: int | None = None) -> QueueItem | None:
    """Return the item the user should label next in the round (the open one when None), leasing it if needed.

    A user who already holds an unexpired lease gets that item back (a page reload shows the same product).
    """
    if round is None:
        round = LabellingRound.objects.filter(status=RoundStatus.OPEN).first()
        if round is None:
            return None
    items = queue_items_lease(user=user, round=round, count=1, lease_seconds=lease_seconds)
    return items[0] if items else None


@transaction.atomic
def queue_item_submit(*, item_id: int, user: AbstractBaseUser, category: Category | None,
                      time_spent_ms: int | None, flagged: bool = False, note: str = "", token: str = "") -> Label:
    """Label the item's product (category None: "none fits") and mark the item done; return the label.

    The caller must hold the lease, or its lease expired (or its round closed) and nobody else took the item;
    LeaseLost otherwise, also for an item the caller never leased or skipped.
    Idempotent: a repeated submit of an item this user already labelled returns that label. A non-empty
    `token` that no longer matches the item (the user undid the label since) raises SubmitOutdated.
    `flagged` (with `note`) marks the item for review. When the round's last item is done, closing the round
    is scheduled after commit. A submit that arrives after its round closed is still recorded: the label counts
    in the next training. Locks the item row for the transaction.
    """
    item = QueueItem.objects.select_for_update(of=("self",)).select_related("round", "product").get(pk=item_id)
    if item.status == QueueItemStatus.DONE:
        label = Label.objects.filter(pk=item.label_id).first() if item.label_id else None
        if label is not None and label.labeller_id == user.pk and not label.undone:
            return label
        raise LeaseLost("Another labeller already labelled this product.")
    if token and token != queue_item_token(item):
        raise SubmitOutdated("This label was undone since; the product is waiting for your new label.")
    if item.leased_to_id != user.pk:
        if item.status == QueueItemStatus.LEASED:
            raise LeaseLost("Another labeller holds this product now: your lease on it expired and they took it.")
        raise LeaseLost("You do not hold this product: take it from the queue before labelling it.")
    if time_spent_ms is not None and time_spent_ms < 0:
        raise ValidationError({"time_spent_ms": "time spent cannot be negative"})
    label = label_create(product=item.product, category=category, user=user, strategy=item.strategy,
                         note=note[:NOTE_MAX_LENGTH])
    # Sets label.context too (the reverse one-to-one cache): callers read label.context.round without a query.
    LabelContext.objects.create(label=label, round=item.round, model_version_id=item.round.model_version_id,
                                time_spent_ms=time_spent_ms)
    QueueItem.objects.filter(pk=item.pk).update(
        status=QueueItemStatus.DONE, label=label, leased_to=user, lease_expires_at=None, done_at=timezone.now(),
        flagged=flagged)
    round_id = item.round_id
    # Checked after commit: two labellers finishing the last two items at once each see the other's item
    # still open inside their own transaction, and neither would schedule the close.
    transaction.on_commit(lambda: labelling_round_close_if_done(round_id=round_id))
    return label


def labelling_round_close_if_done(*, round_id: int) -> bool:
    """Schedule closing an open round whose items are all done; return whether it was scheduled."""
    remaining = QueueItem.objects.filter(round_id=round_id, status__in=[
        QueueItemStatus.PENDING, QueueItemStatus.LEASED, QueueItemStatus.SKIPPED]).exists()
    if remaining or not LabellingRound.objects.filter(pk=round_id, status=RoundStatus.OPEN).exists():
        return False
    with transaction.atomic():
        task_send("labelapp.workflow.tasks.labelling_round_close_task", round_id=round_id,
                  reason="every item labelled")
    return True


def queue_item_skip(*, item_id: int, user: AbstractBaseUser) -> QueueItem:
    """Give the item back to the queue for other labellers; this user is not offered it again.

    Compare-and-set on (LEASED, leased to this user); a repeated skip is harmless. LeaseLost otherwise.
    """
    skipped = QueueItem.objects.filter(
        pk=item_id, status=QueueItemStatus.LEASED, leased_to=user,
    ).update(status=QueueItemStatus.PENDING, leased_to=None, lease_expires_at=None,
             skipped_by=Func(F("skipped_by"), Value(user.pk), function="array_append",
                             output_field=ArrayField(models.BigIntegerField())))
    item = QueueItem.objects.get(pk=item_id)
    if not skipped and not (item.status == QueueItemStatus.PENDING and user.pk in item.skipped_by):
        raise LeaseLost("You do not hold this product any more.")
    return item


@transaction.atomic
def label_undo_last(*, user: AbstractBaseUser, round: LabellingRound,
                    lease_seconds: int | None = None) -> QueueItem | None:
    """Undo the user's newest label in the open round and lease its item back to them; None if none is left.

    The label stays in the history, marked undone; the product's effective category is recomputed from what
    is left (the catalogue's `product_category_recompute`). Repeated undos walk back through the user's labels. Locks the item.
    """
    if round.status != RoundStatus.OPEN:
        raise RoundNotOpen("This round is closed: its labels can no longer be undone.")
    label = (Label.objects.filter(context__round=round, labeller=user, undone=False)
             .order_by("-created_at", "-id").first())
    if label is None:
        return None
    item = (QueueItem.objects.select_for_update(of=("self",)).select_related("product", "round")
            .filter(round=round, product_id=label.product_id).first())
    label_undo(label=label)
    if item is None or item.label_id != label.pk:
        # Labelled outside this round's queue (or replaced since): nothing to hand back.
        return None
    expires = timezone.now() + (timedelta(seconds=lease_seconds) if lease_seconds is not None else lease_duration())
    QueueItem.objects.filter(pk=item.pk).update(status=QueueItemStatus.LEASED, leased_to=user,
                                                lease_expires_at=expires, done_at=None, flagged=False)
    item.status, item.leased_to, item.lease_expires_at = QueueItemStatus.LEASED, user, expires
    item.done_at, item.flagged = None, False
    return item


def queue_leases_expire(*, round_id: int | None = None) -> int:
    """Return every item whose lease expired (in one round, or all) to PENDING; return how many.

    `leased_to` keeps the last holder, whose late submit still counts until someone else claims the item.
    """
    expired = QueueItem.objects.filter(status=QueueItemStatus.LEASED, lease_expires_at__lte=timezone.now())
    if round_id is not None:
        expired = expired.filter(round_id=round_id)
    return expired.update(status=QueueItemStatus.PENDING, lease_expires_at=None)
