"""Active-learning sampling strategies, NumPy only: score the unlabelled pool, then pick a batch to label.

A score function maps model outputs for n pool products to float64 [n]: the higher, the more a human label
is worth. Every strategy is registered once in `STRATEGIES` and called through `strategy_scores`;
`batch_select` turns scores into a batch (optionally spread out in embedding space) and
`mixed_batch_select` draws one batch from several strategies, e.g. a random slice beside margin sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from classifier.core.metrics import Ancestors, level_labels

EPSILON = 1e-12
RandomState = int | np.random.Generator | None


def random_scores(proba: np.ndarray, *, random_state: RandomState = None) -> np.ndarray:
    """Return uniform random scores float64 [n] for the n rows of proba [n, C] (only its length is read)."""
    return np.random.default_rng(random_state).random(len(proba))


def entropy_scores(proba: np.ndarray) -> np.ndarray:
    """Return the entropy −Σ p ln p (nats) of each row of proba [n, C], float64 [n]."""
    proba = np.asarray(proba, dtype=np.float64)
    # Clipping inside the log only: a zero probability then contributes 0 · ln ε = 0 exactly.
    return -np.sum(proba * np.log(np.clip(proba, EPSILON, 1.0)), axis=1)


def margin_scores(proba: np.ndarray) -> np.ndarray:
    """Return −(p₁ − p₂), minus the gap between the two most probable classes of proba [n, C], float64 [n]."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[1] < 2:
        return -proba[:, 0] if proba.shape[1] else np.zeros(len(proba))
    top_two = np.partition(proba, proba.shape[1] - 2, axis=1)[:, -2:]
    return -(top_two[:, 1] - top_two[:, 0])


def least_confidence_scores(proba: np.ndarray) -> np.ndarray:
    """Return 1 − max p of each row of proba [n, C], float64 [n]."""
    return 1.0 - np.asarray(proba, dtype=np.float64).max(axis=1)


def qbc_vote_entropy_scores(members: np.ndarray) -> np.ndarray:
    """Return the entropy of the committee's votes (argmax counts / M) for members' proba [M, n, C], float64 [n]."""
    members = np.asarray(members)
    n_members, n, n_classes = members.shape
    votes = np.zeros((n, n_classes))
    for member in members:
        votes[np.arange(n), member.argmax(axis=1)] += 1.0
    return entropy_scores(votes / n_members)


def qbc_kl_scores(members: np.ndarray) -> np.ndarray:
    """Return the mean over members of KL(member ‖ consensus) for proba [M, n, C], float64 [n]; consensus = mean."""
    members = np.asarray(members, dtype=np.float64)
    consensus = np.clip(members.mean(axis=0), EPSILON, 1.0)
    log_ratio = np.log(np.clip(members, EPSILON, 1.0)) - np.log(consensus)
    return np.mean(np.sum(members * log_ratio, axis=2), axis=0)


def density_weighted_scores(informativeness: np.ndarray, embeddings: np.ndarray, *, beta: float = 1.0) -> np.ndarray:
    """Return informativeness [n] (≥ 0) × density^β, float64 [n]; density = (1 + mean cosine similarity) / 2.

    Rows of embeddings [n, d] are L2-normalised, so mean_j cos(x_i, x_j) = x_i · mean_j(x_j): O(n·d), no
    n×n matrix. The mean includes the product itself (as the naive n×n mean would). (1 + s) / 2 maps the
    similarity from [−1, 1] onto [0, 1] monotonically, so a density weight never flips an informativeness sign.
    """
    embeddings = np.asarray(embeddings)
    # x_i · mean_j(x_j / |x_j|) / |x_i| on the raw rows: no normalised copy of a 100k × 1280 matrix either.
    inverse_norms = 1.0 / np.maximum(np.sqrt(np.einsum("ij,ij->i", embeddings, embeddings)), EPSILON)
    mean_unit = (inverse_norms.astype(embeddings.dtype) @ embeddings) / len(embeddings)
    similarity = (embeddings @ mean_unit) * inverse_norms
    density = np.clip((1.0 + similarity) / 2.0, 0.0, 1.0)
    return np.asarray(informativeness, dtype=np.float64) * density ** beta


def tree_entropy_scores(proba: np.ndarray, *, ancestors: Ancestors,
                        level_weights: np.ndarray | list[float] | None = None) -> np.ndarray:
    """Return Σ_L w_L · H(level-L ancestor distribution) of proba [n, C], float64 [n].

    `ancestors` maps each class index to its ancestor ids, top level first (as `metrics.Ancestors`; a shorter
    path repeats its deepest id). At level L the class probabilities are summed into their level-L groups and
    that distribution's entropy taken. Weights default to 1 per level, so doubt between departments counts at
    every level below them, while doubt between two sibling leaves counts at the leaf level only.
    """
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = proba.shape[1]
    depth = max((len(path) for path in ancestors.values()), default=0)
    weights = np.ones(depth) if level_weights is None else np.asarray(level_weights, dtype=np.float64)
    if len(weights) != depth:
        raise ValueError(f"level_weights needs one weight per level ({depth}), got {len(weights)}")
    scores = np.zeros(len(proba))
    for level in range(depth):
        groups = level_labels(np.arange(n_classes), ancestors, level=level)
        group_index = {group: position for position, group in enumerate(dict.fromkeys(groups.tolist()))}
        membership = np.zeros((n_classes, len(group_index)))
        membership[np.arange(n_classes), [group_index[group] for group in groups.tolist()]] = 1.0
        scores += weights[level] * entropy_scores(proba @ membership)
    return scores


# Density weighting needs informativeness ≥ 0: margin is shifted to 1 − (p₁ − p₂) ∈ [0, 1].
DENSITY_BASES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "entropy": entropy_scores,
    "margin": lambda proba: 1.0 + margin_scores(proba),
    "least_confidence": least_confidence_scores,
}


def density_strategy_scores(proba: np.ndarray, embeddings: np.ndarray, *, base: str = "entropy",
                            beta: float = 1.0) -> np.ndarray:
    """Return `density_weighted_scores` of the `base` informativeness of proba [n, C] and embeddings [n, d]."""
    if base not in DENSITY_BASES:
        raise ValueError(f"density base must be one of {sorted(DENSITY_BASES)}, got {base!r}")
    return density_weighted_scores(DENSITY_BASES[base](proba), embeddings, beta=beta)


@dataclass(frozen=True)
class Strategy:
    """A registered sampling strategy: `score(**{need: input}, **options)` → float [n], higher = label first."""

    name: str
    label: str
    needs: tuple[str, ...]
    score: Callable[..., np.ndarray]
    random: bool = False


STRATEGIES: dict[str, Strategy] = {strategy.name: strategy for strategy in (
    Strategy("random", "Random", ("proba",), random_scores, random=True),
    Strategy("entropy", "Entropy", ("proba",), entropy_scores),
    Strategy("margin", "Margin", ("proba",), margin_scores),
    Strategy("least_confidence", "Least confidence", ("proba",), least_confidence_scores),
    Strategy("qbc_vote", "Query by committee (vote entropy)", ("members",), qbc_vote_entropy_scores),
    Strategy("qbc_kl", "Query by committee (KL to consensus)", ("members",), qbc_kl_scores),
    Strategy("density", "Density-weighted", ("proba", "embeddings"), density_strategy_scores),
    Strategy("tree_entropy", "Taxonomy-tree entropy", ("proba", "ancestors"), tree_entropy_scores),
)}


def strategy_scores(name: str, *, proba: np.ndarray | None = None, members: np.ndarray | None = None,
                    embeddings: np.ndarray | None = None, ancestors: Ancestors | None = None,
                    random_state: RandomState = None, **options) -> np.ndarray:
    """Return the scores float64 [n] of strategy `name` on proba [n, C], members [M, n, C] or embeddings [n, d].

    Raises ValueError naming the strategy's missing inputs; `options` go to its score function (e.g. beta).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown sampling strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    strategy = STRATEGIES[name]
    given = {"proba": proba, "members": members, "embeddings": embeddings, "ancestors": ancestors}
    missing = [need for need in strategy.needs if given[need] is None]
    if missing:
        raise ValueError(f"sampling strategy {name!r} needs {', '.join(missing)}")
    if strategy.random:
        options = {**options, "random_state": random_state}
    return np.asarray(strategy.score(**{need: given[need] for need in strategy.needs}, **options), dtype=np.float64)


def batch_select(scores: np.ndarray, *, batch_size: int, embeddings: np.ndarray | None = None,
                 diversity: float = 0.0, candidate_factor: int = 10, random_state: RandomState = None) -> np.ndarray:
    """Return the indices int64 [≤ batch_size] of the batch to label, best first, from scores float [n].

    NaN and −inf scores are never picked. Ties are broken by a permutation drawn from `random_state` (by index
    when None), so the same inputs always give the same batch. With `diversity` > 0 and embeddings [n, d], the
    batch is picked greedily among the top candidate_factor · batch_size products by rescaled score (min–max
    over the candidates, so `diversity` means the same for every strategy) minus diversity × the highest
    cosine similarity to the products already picked: O(candidates · batch_size · d).
    """
    return _select(np.asarray(scores, dtype=np.float64), batch_size=batch_size, embeddings=embeddings,
                   diversity=diversity, candidate_factor=candidate_factor, random_state=random_state,
                   picked=np.zeros(0, np.int64))


def mix_counts(mix: Mapping[str, int | float], *, batch_size: int | None = None) -> dict[str, int]:
    """Return the number of products per strategy: ints are counts; with any float, shares of batch_size.

    Shares are normalised to sum to 1 and rounded by largest remainder, so the counts sum to batch_size.
    """
    if not mix or any(value < 0 for value in mix.values()):
        raise ValueError("a strategy mix needs at least one strategy and no negative share")
    if all(isinstance(value, int) for value in mix.values()):
        counts = dict(mix)
        if batch_size is not None and sum(counts.values()) != batch_size:
            raise ValueError(f"the mix's counts sum to {sum(counts.values())}, not batch_size={batch_size}")
        return counts
    if batch_size is None:
        raise ValueError("a mix of shares needs batch_size")
    shares = np.asarray([float(value) for value in mix.values()])
    if shares.sum() <= 0:
        raise ValueError("a strategy mix needs a positive share")
    exact = shares / shares.sum() * batch_size
    counts = np.floor(exact).astype(int)
    for position in np.argsort(-(exact - counts), kind="stable")[:batch_size - counts.sum()]:
        counts[position] += 1
    return dict(zip(mix, counts.tolist()))


def mixed_batch_select(*, mix: Mapping[str, int | float], batch_size: int | None = None,
                       proba: np.ndarray | None = None, members: np.ndarray | None = None,
                       embeddings: np.ndarray | None = None, ancestors: Ancestors | None = None,
                       diversity: float = 0.0, candidate_factor: int = 10, random_state: RandomState = None,
                       options: Mapping[str, Mapping] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (indices int64 [B], strategy name object [B]) of one batch drawn from several strategies.

    `mix` gives each strategy a count or a share of batch_size (`mix_counts`). "random" draws first, from the
    whole pool, so its slice stays a uniform sample (an unbiased estimate of accuracy on the pool); the others
    follow in the mix's order, each from what is left. No index is picked twice. `diversity` (not applied to
    random) also penalises similarity to what earlier strategies picked. `options` maps a strategy to its
    score options, e.g. {"density": {"beta": 2}}.
    """
    counts = mix_counts(mix, batch_size=batch_size)
    unknown = set(counts) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown sampling strategies {sorted(unknown)}; choose among {sorted(STRATEGIES)}")
    rng = np.random.default_rng(random_state)
    inputs = {"proba": proba, "members": members, "embeddings": embeddings, "ancestors": ancestors}
    order = sorted(counts, key=lambda name: name != "random")
    picked, names = np.zeros(0, np.int64), []
    for name in order:
        if counts[name] == 0:
            continue
        scores = strategy_scores(name, **inputs, random_state=rng, **(options or {}).get(name, {}))
        scores[picked] = -np.inf
        chosen = _select(scores, batch_size=counts[name], embeddings=embeddings,
                         diversity=0.0 if STRATEGIES[name].random else diversity,
                         candidate_factor=candidate_factor, random_state=rng, picked=picked)
        picked = np.concatenate([picked, chosen])
        names.extend([name] * len(chosen))
    return picked, np.asarray(names, dtype=object)


def _select(scores: np.ndarray, *, batch_size: int, embeddings: np.ndarray | None, diversity: float,
            candidate_factor: int, random_state: RandomState, picked: np.ndarray) -> np.ndarray:
    """Return batch_select's batch; with diversity, similarity to the indices `picked` already also counts."""
    scores = np.where(np.isnan(scores), -np.inf, scores)
    tie_break = (np.arange(len(scores)) if random_state is None
                 else np.random.default_rng(random_state).permutation(len(scores)))
    ranking = np.lexsort((tie_break, -scores))
    ranking = ranking[scores[ranking] > -np.inf]
    batch_size = min(int(batch_size), len(ranking))
    if diversity <= 0 or embeddings is None or (batch_size <= 1 and not len(picked)):
        return ranking[:batch_size].astype(np.int64)

    candidates = ranking[:max(batch_size, int(candidate_factor) * batch_size)]
    candidate_scores = scores[candidates]
    spread = candidate_scores.max() - candidate_scores.min()
    scaled = (candidate_scores - candidate_scores.min()) / spread if spread > 0 else np.zeros(len(candidates))
    unit = _unit_rows(np.asarray(embeddings)[candidates])
    # Only positive similarity is penalised: an unrelated (orthogonal or opposite) product costs nothing.
    nearest = np.zeros(len(candidates))
    if len(picked):
        earlier = _unit_rows(np.asarray(embeddings)[picked])
        nearest = np.maximum(0.0, (unit @ earlier.T).max(axis=1))
    available = np.ones(len(candidates), bool)
    chosen = []
    for _ in range(batch_size):
        # argmax takes the first of equal values: the candidate ranked higher, itself tie-broken above.
        position = int(np.argmax(np.where(available, scaled - diversity * nearest, -np.inf)))
        chosen.append(candidates[position])
        available[position] = False
        nearest = np.maximum(nearest, unit @ unit[position])
    return np.asarray(chosen, dtype=np.int64)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Return vectors [n, d] as float64 with rows L2-normalised (a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, EPSILON)
