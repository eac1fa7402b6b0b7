"""Labelling rounds: open one with a strategy mix, fill its queue from the pool, close it to retrain, continue.

Life of a round
    labelling_round_create ──outbox──▶ labelling_round_fill_task (ml queue: services.filling scores the pool)
    … labellers work through the queue (labelapp.workflow.services.queue) …
    labelling_round_close (a reviewer, or the last item done) ──on commit──▶
        train_run_execute_task (ml) ──▶ labelling_round_after_training_task ──▶ next round (auto_continue)

Contracts
- At most one round is OPEN (the `one_open_round` constraint); creating one takes an advisory lock so two
  concurrent creations get a clear error instead of an IntegrityError.
- Filling, closing and finishing are compare-and-sets on the round's state: a duplicate task delivery or a
  second click does nothing.
- If the training task dies without finishing its run, the round waits in CLOSING until
  `labelling_rounds_reap` (a beat task) sees the run finished (the training reaper fails it) and finishes it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chain, signature
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from classifier.core.names import ARCHITECTURE_NAMES, OBJECTIVES
from classifier.core.sampling import STRATEGIES
from classifier.models import TrainStatus
from classifier.services.runs import train_run_create
from labelapp.catalogue.models import Label, Product, Split
from labelapp.catalogue.services.trust import trust_and_categories_refresh
from labelapp.common.dispatch import canvas_send, task_send
from labelapp.workflow.models import LabellingRound, QueueItem, QueueItemStatus, RoundStatus

logger = logging.getLogger(__name__)

_CREATE_LOCK_KEY = 0x6C61_6272_6E64  # "labrnd": serialises round creation
MAX_BATCH_SIZE = 100_000
DEFAULT_COMMITTEE_SIZE = 5
# Options a round understands besides per-strategy score options ({"density": {"beta": 2}}); "training"
# holds train run parameters for the retraining (epochs, learning_rate…, see classifier.services.runs).
ROUND_OPTIONS = ("diversity", "committee_size", "seed", "candidate_factor", "training")


def labelling_round_setting(round: LabellingRound) -> str:
    """Return the round's setting in words, e.g. "entropy 80 % + random 20 % · exclusive+rule · +10 % random"."""
    total = sum(float(share) for share in round.strategy_mix.values()) or 1.0
    mix = " + ".join(f"{STRATEGIES[name].label.lower() if name in STRATEGIES else name} "
                     f"{100 * float(share) / total:.0f} %" for name, share in mix_ordered(round.strategy_mix))
    parts = [mix, "+".join(round.objectives)]
    if round.random_share:
        parts.append(f"+{100 * round.random_share:.0f} % random")
    if round.architecture:
        parts.append(round.architecture)
    return " · ".join(parts)


def mix_ordered(strategy_mix: dict[str, float]) -> list[tuple[str, float]]:
    """Return the mix largest share first (then by name): PostgreSQL's jsonb keeps no key order of its own."""
    return sorted(((name, float(share)) for name, share in strategy_mix.items()), key=lambda pair: (-pair[1], pair[0]))


def _round_settings_errors(*, strategy_mix: Any, batch_size: Any, objectives: Any, architecture: str,
                           random_share: Any, options: Any) -> dict[str, str]:
    errors = {}
    if not isinstance(strategy_mix, dict) or not strategy_mix:
        errors["strategy_mix"] = "choose at least one sampling strategy"
    else:
        unknown = sorted(set(strategy_mix) - set(STRATEGIES))
        shares = list(strategy_mix.values())
        if unknown:
            errors["strategy_mix"] = f"unknown strategies {unknown}; choose among {sorted(STRATEGIES)}"
        elif any(isinstance(share, bool) or not isinstance(share, (int, float)) or not share >= 0
                 for share in shares) or sum(shares) <= 0:
            errors["strategy_mix"] = "every share must be a number ≥ 0, and at least one positive"
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        errors["batch_size"] = f"the batch size must be a whole number between 1 and {MAX_BATCH_SIZE:,}"
    if (not isinstance(objectives, (list, tuple)) or not objectives
            or not set(objectives) <= set(OBJECTIVES)):
        errors["objectives"] = f"objectives must be a non-empty subset of {list(OBJECTIVES)}"
    if architecture and architecture not in ARCHITECTURE_NAMES:
        errors["architecture"] = f"unknown architecture {architecture!r}; choose one of {list(ARCHITECTURE_NAMES)}"
    if isinstance(random_share, bool) or not isinstance(random_share, (int, float)) or not 0 <= random_share <= 1:
        errors["random_share"] = "the random share must be between 0 and 1"
    if not isinstance(options, dict):
        errors["options"] = "options must be an object"
    else:
        unknown = sorted(set(options) - set(ROUND_OPTIONS) - set(STRATEGIES))
        if unknown:
            errors["options"] = f"unknown options {unknown}; known: {list(ROUND_OPTIONS)} or a strategy's name"
        elif not all(isinstance(options[name], dict) for name in options if name in STRATEGIES or name == "training"):
            errors["options"] = "a strategy's options and the training options must be objects"
    return errors


@transaction.atomic
def labelling_round_create(*, strategy_mix: dict[str, float], batch_size: int, objectives: list[str],
                           architecture: str = "", random_share: float = 0.0, options: dict | None = None,
                           auto_continue: bool = True, user: AbstractBaseUser | None = None,
                           previous: LabellingRound | None = None) -> LabellingRound:
    """Open the next labelling round and schedule filling its queue (ml queue) after commit.

    `strategy_mix` maps strategy names of classifier.core.sampling.STRATEGIES to shares of the batch;
    `random_share` of the batch is drawn at random on top of the mix. Raises ValidationError for bad settings
    or while another round is open.
    """
    options = dict(options or {})
    objectives = list(dict.fromkeys(objectives or []))
    errors = _round_settings_errors(strategy_mix=strategy_mix, batch_size=batch_size, objectives=objectives,
                                    architecture=architecture, random_share=random_share, options=options)
    if errors:
        raise ValidationError(errors)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CREATE_LOCK_KEY])
    open_round = LabellingRound.objects.filter(status=RoundStatus.OPEN).first()
    if open_round is not None:
        raise ValidationError(f"Round {open_round.number} is still open: close it before opening another.")
    last = LabellingRound.objects.order_by("-number").values_list("number", flat=True).first() or 0
    round = LabellingRound(
        number=last + 1, strategy_mix={name: float(share) for name, share in strategy_mix.items()},
        random_share=float(random_share), batch_size=batch_size, objectives=objectives, architecture=architecture,
        options=options, auto_continue=auto_continue, created_by=user, previous=previous)
    round.full_clean()
    try:
        with transaction.atomic():
            round.save()
    except IntegrityError as error:
        raise ValidationError("Another round was opened at the same time: reload and try again.") from error
    task_send("labelapp.workflow.tasks.labelling_round_fill_task", round_id=round.pk)
    return round


def labelling_pool_ids() -> list[int]:
    """Return the ids of the products a round may draw from: dev split, no label (undone ones aside), not queued
    in an open round, in id order."""
    labelled = Label.objects.filter(product=OuterRef("pk"), undone=False)
    queued = QueueItem.objects.filter(product=OuterRef("pk"), round__status=RoundStatus.OPEN)
    return list(Product.objects.filter(split=Split.DEV).filter(~Exists(labelled), ~Exists(queued))
                .order_by("id").values_list("id", flat=True))


@transaction.atomic
def labelling_round_close(*, round_id: int, user: AbstractBaseUser | None = None, reason: str) -> LabellingRound:
    """Close an open round: stop labelling, create its TrainRun and, after commit, send the retraining chain.

    OPEN → CLOSING is a compare-and-set: closing a round that is not open returns it unchanged. Outstanding
    leases are released (their items stay unlabelled and return to the pool). The chain is
    train_run_execute_task → labelling_round_after_training_task; if the training task raises, the latter
    still runs as its error callback. Settings the training refuses (ValidationError) fail the round.
    """
    closing = LabellingRound.objects.filter(pk=round_id, status=RoundStatus.OPEN).update(
        status=RoundStatus.CLOSING, close_reason=reason[:200])
    round = LabellingRound.objects.get(pk=round_id)
    if not closing:
        return round
    # `leased_to` stays: the holder's late submit still counts (the lease contract in services/queue.py).
    QueueItem.objects.filter(round=round, status=QueueItemStatus.LEASED).update(
        status=QueueItemStatus.PENDING, lease_expires_at=None)
    # The round's labels are new evidence: re-measure the sources and re-decide the catalogue now, before the
    # retraining (which measures again when it promotes).
    trust_and_categories_refresh()
    try:
        with transaction.atomic():
            run = train_run_create(architecture=round.architecture or None, objectives=round.objectives,
                                   params={**round.options.get("training", {}), "round": round.number,
                                           "setting": labelling_round_setting(round)},
                                   trigger="round", user=user, schedule=False)
    except ValidationError as error:
        LabellingRound.objects.filter(pk=round_id).update(
            status=RoundStatus.FAILED, closed_at=timezone.now(),
            error=f"Retraining was refused: {'; '.join(error.messages)}")
        round.refresh_from_db()
        return round
    LabellingRound.objects.filter(pk=round_id).update(train_run=run)
    round.train_run = run
    labelling_round_retrain_send(round_id=round_id, train_run_id=run.pk)
    return round


def labelling_round_retrain_chain(*, round_id: int, train_run_id: int):
    """Return the Celery chain that trains the round's run, then finishes the round (also if training raises)."""
    after = signature("labelapp.workflow.tasks.labelling_round_after_training_task", kwargs={"round_id": round_id},
                      immutable=True)
    train = signature("classifier.tasks.train_run_execute_task", args=(train_run_id,), immutable=True)
    return chain(train.on_error(after.clone()), after)


def labelling_round_retrain_send(*, round_id: int, train_run_id: int) -> None:
    """Queue the round's retraining chain (through the outbox: sent once the caller's transaction commits)."""
    canvas_send(labelling_round_retrain_chain(round_id=round_id, train_run_id=train_run_id))


@transaction.atomic
def labelling_round_after_training(*, round_id: int) -> LabellingRound:
    """Finish a closing round from its run: CLOSED, or FAILED with the run's error; then open the next round.

    The next round (same settings, `previous` = this one) opens when `auto_continue` is set, also after a
    failed run: labelling goes on with the model that was active. A round whose run has not finished yet is
    left CLOSING for the reaper; a round that is not CLOSING is returned unchanged.
    """
    round = LabellingRound.objects.select_related("train_run").get(pk=round_id)
    run = round.train_run
    if round.status != RoundStatus.CLOSING or run is None or not run.is_finished:
        return round
    failed = run.status == TrainStatus.FAILED
    finished = LabellingRound.objects.filter(pk=round_id, status=RoundStatus.CLOSING).update(
        status=RoundStatus.FAILED if failed else RoundStatus.CLOSED, closed_at=timezone.now(),
        error=f"Retraining failed: {run.error.splitlines()[0] if run.error else 'no error recorded'}" if failed else "")
    round.refresh_from_db()
    if finished and round.auto_continue:
        try:
            with transaction.atomic():
                labelling_round_create(strategy_mix=round.strategy_mix, batch_size=round.batch_size,
                                       objectives=list(round.objectives), architecture=round.architecture,
                                       random_share=round.random_share,
                                       options={k: v for k, v in round.options.items() if k != "fill"},
                                       auto_continue=True, user=round.created_by, previous=round)
        except ValidationError as error:
            logger.warning("round %s: the next round was not opened: %s", round.number, "; ".join(error.messages))
    return round


def labelling_rounds_close_complete() -> int:
    """Close open rounds whose items are all done (their closing message was lost, e.g. the broker was away).

    Return how many were closed. Closing is a compare-and-set, so a round closed meanwhile is left alone.
    """
    remaining = QueueItem.objects.filter(round=OuterRef("pk"), status__in=[
        QueueItemStatus.PENDING, QueueItemStatus.LEASED, QueueItemStatus.SKIPPED])
    complete = (LabellingRound.objects.filter(status=RoundStatus.OPEN)
                .filter(Exists(QueueItem.objects.filter(round=OuterRef("pk"))), ~Exists(remaining)))
    closed = 0
    for round_id in complete.values_list("pk", flat=True):
        closed += labelling_round_close(round_id=round_id, reason="every item labelled").status != RoundStatus.OPEN
    return closed


def labelling_rounds_reap() -> int:
    """Finish closing rounds whose run finished without the chain's last step; return how many were finished."""
    stuck = LabellingRound.objects.filter(
        status=RoundStatus.CLOSING, train_run__status__in=[TrainStatus.SUCCEEDED, TrainStatus.FAILED])
    finished = 0
    for round_id in stuck.values_list("pk", flat=True):
        if labelling_round_after_training(round_id=round_id).status != RoundStatus.CLOSING:
            finished += 1
    return finished
