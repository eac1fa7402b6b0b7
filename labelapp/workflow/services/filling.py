"""Filling a labelling round's queue: the active model scores the pool and the round's strategy mix draws a batch.

Worker-only (the ml queue): scoring loads the model with TensorFlow, so nothing the web process imports may
import this module (an import-linter contract).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from django.db import transaction

from classifier.core.sampling import STRATEGIES, mixed_batch_select, strategy_scores
from classifier.selectors.versions import model_version_active
from classifier.services.scoring import pool_scores
from labelapp.catalogue.models import LabelStrategy
from labelapp.workflow.models import LabellingRound, QueueItem, RoundStatus
from labelapp.workflow.services.rounds import DEFAULT_COMMITTEE_SIZE, labelling_pool_ids, mix_ordered

logger = logging.getLogger(__name__)


def _effective_mix(*, strategy_mix: dict[str, float], random_share: float) -> dict[str, float]:
    """Return the mix with `random_share` of the batch added as random, as float shares summing to 1."""
    total = sum(float(share) for share in strategy_mix.values())
    # mixed_batch_select draws random first, then the others in this order, each from what is left.
    mix = {name: (1.0 - random_share) * share / total for name, share in mix_ordered(strategy_mix)}
    if random_share > 0:
        mix[LabelStrategy.RANDOM] = mix.get(LabelStrategy.RANDOM, 0.0) + float(random_share)
    return {name: share for name, share in mix.items() if share > 0}


def _interleaved_order(names: np.ndarray) -> np.ndarray:
    """Return an order of the picks [B] that keeps every prefix close to the mix's proportions.

    Each strategy's picks stay best first; pick r of a strategy with k picks sorts at (r + ½) / k. A round
    closed early then still holds each strategy's share, not only the strategies that happened to come first.
    """
    keys = np.zeros(len(names))
    for name in dict.fromkeys(names.tolist()):
        members = np.flatnonzero(names == name)
        keys[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.argsort(keys, kind="stable")


def _batch_draw(*, round: LabellingRound, pool_ids: list[int], model_version, seed: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Return (product ids int64 [B], strategy names object [B], scores float64 [B] (NaN: none), notes)."""
    batch = min(round.batch_size, len(pool_ids))
    if model_version is None:
        # Cold start: nothing to score with, so the whole batch is a uniform sample of the pool.
        picked = np.random.default_rng(seed).choice(len(pool_ids), size=batch, replace=False)
        return (np.asarray(pool_ids, np.int64)[picked], np.full(batch, LabelStrategy.RANDOM.value, dtype=object),
                np.full(batch, np.nan), {"cold_start": True})
    options = round.options or {}
    mix = _effective_mix(strategy_mix=round.strategy_mix, random_share=round.random_share)
    notes: dict[str, Any] = {"cold_start": False}
    needs = {need for name in mix for need in STRATEGIES[name].needs}
    diversity = float(options.get("diversity", 0.0))
    scores = pool_scores(model_version=model_version, product_ids=pool_ids,
                         with_embeddings="embeddings" in needs or diversity > 0,
                         committee_size=int(options.get("committee_size", DEFAULT_COMMITTEE_SIZE))
                         if "members" in needs else 0)
    if "members" in needs and scores.members is None:
        # A committee needs an earlier model version beside this one; until one exists, entropy stands in.
        substituted = [name for name in mix if "members" in STRATEGIES[name].needs]
        for name in substituted:
            mix[LabelStrategy.ENTROPY] = mix.get(LabelStrategy.ENTROPY, 0.0) + mix.pop(name)
        notes["substituted"] = {name: LabelStrategy.ENTROPY.value for name in substituted}
    inputs = {"proba": scores.proba, "members": scores.members, "embeddings": scores.embeddings,
              "ancestors": scores.ancestors}
    strategy_options = {name: value for name, value in options.items() if name in STRATEGIES}
    indices, names = mixed_batch_select(mix=mix, batch_size=batch, **inputs, diversity=diversity,
                                        candidate_factor=int(options.get("candidate_factor", 10)),
                                        random_state=seed, options=strategy_options)
    values = np.full(len(indices), np.nan)
    for name in set(names.tolist()) - {LabelStrategy.RANDOM.value}:
        members = names == name
        values[members] = strategy_scores(name, **inputs, **strategy_options.get(name, {}))[indices[members]]
    return scores.product_ids[indices], names, values, notes


def labelling_round_fill(*, round_id: int, random_state: int | None = None) -> int:
    """Draw the round's batch from the pool and write its queue items; return how many were written.

    Cold start (no active model version): a uniform random batch. Otherwise the active version scores the
    pool (`classifier.services.scoring.pool_scores`, TensorFlow: ml queue only) and `mixed_batch_select`
    draws the mix plus the round's random share. Idempotent: a round that has items, or is not open, is left
    as it is. The long scoring runs outside any transaction; the write re-checks under the round's row lock.
    """
    round = LabellingRound.objects.get(pk=round_id)
    if round.status != RoundStatus.OPEN or QueueItem.objects.filter(round=round).exists():
        return 0
    pool_ids = labelling_pool_ids()
    if not pool_ids:
        LabellingRound.objects.filter(pk=round_id).update(error="No unlabelled dev products are left to label.")
        return 0
    model_version = model_version_active()
    seed = random_state if random_state is not None else int(round.options.get("seed", round.number))
    product_ids, names, scores, notes = _batch_draw(round=round, pool_ids=pool_ids, model_version=model_version,
                                                    seed=seed)
    order = _interleaved_order(names)
    items = [QueueItem(round_id=round_id, product_id=int(product_ids[index]), strategy=str(names[index]),
                       score=None if np.isnan(scores[index]) else float(scores[index]), position=position)
             for position, index in enumerate(order)]
    with transaction.atomic():
        round = LabellingRound.objects.select_for_update().get(pk=round_id)
        if round.status != RoundStatus.OPEN or QueueItem.objects.filter(round=round).exists():
            return 0
        QueueItem.objects.bulk_create(items, batch_size=5000)
        round.model_version = model_version
        round.options = {**round.options, "fill": {**notes, "pool": len(pool_ids), "items": len(items)}}
        round.error = ""
        round.save(update_fields=["model_version", "options", "error"])
    logger.info("round %s filled with %s items from a pool of %s", round.number, len(items), len(pool_ids))
    return len(items)
