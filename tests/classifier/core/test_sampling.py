"""Sampling strategies against hand-computed values on tiny arrays; no Django, no model."""

import math

import numpy as np
import pytest

from classifier.core.sampling import (
    STRATEGIES,
    batch_select,
    density_weighted_scores,
    entropy_scores,
    least_confidence_scores,
    margin_scores,
    mix_counts,
    mixed_batch_select,
    qbc_kl_scores,
    qbc_vote_entropy_scores,
    random_scores,
    strategy_scores,
    tree_entropy_scores,
)

LN2 = math.log(2)
# Two departments A and B with two leaves each, and a leaf C with no parent (its id repeats at level 2).
TREE = {0: ("A", "A1"), 1: ("A", "A2"), 2: ("B", "B1"), 3: ("B", "B2"), 4: ("C",)}


def test_entropy_of_hand_computed_distributions():
    proba = np.array([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25] * 4, [0.7, 0.2, 0.1, 0.0]])

    scores = entropy_scores(proba)

    # −(0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1) = 0.249672 + 0.321888 + 0.230259
    assert scores == pytest.approx([LN2, 0.0, math.log(4), 0.801819], abs=1e-6)


def test_margin_and_least_confidence_values_and_their_different_orders():
    proba = np.array([[0.5, 0.49, 0.01], [0.4, 0.3, 0.3], [0.9, 0.05, 0.05]])

    margin, least_confidence = margin_scores(proba), least_confidence_scores(proba)

    assert margin == pytest.approx([-0.01, -0.1, -0.85])
    assert least_confidence == pytest.approx([0.5, 0.6, 0.1])
    # A near tie between two classes is margin's first pick; a flat top is least confidence's.
    assert list(np.argsort(-margin)) == [0, 1, 2]
    assert list(np.argsort(-least_confidence)) == [1, 0, 2]


def test_random_scores_are_reproducible_and_one_per_product():
    proba = np.zeros((5, 3))

    first, again, other = (random_scores(proba, random_state=seed) for seed in (1, 1, 2))

    assert first.shape == (5,) and np.all((0 <= first) & (first < 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_qbc_vote_entropy_of_three_members():
    # Product 0: votes for classes 0, 0, 1 → (2/3, 1/3, 0); product 1: all vote class 2.
    members = np.array([[[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]],
                        [[0.5, 0.4, 0.1], [0.2, 0.2, 0.6]],
                        [[0.3, 0.6, 0.1], [0.3, 0.3, 0.4]]])

    scores = qbc_vote_entropy_scores(members)

    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))  # 0.636514
    assert scores == pytest.approx([expected, 0.0])


def test_qbc_kl_to_consensus_of_two_members():
    # Consensus (0.6, 0.4); KL = 0.8 ln(0.8/0.6) + 0.2 ln(0.2/0.4) = 0.091516
    # and 0.4 ln(0.4/0.6) + 0.6 ln(0.6/0.4) = 0.081093.
    members = np.array([[[0.8, 0.2], [0.5, 0.5]], [[0.4, 0.6], [0.5, 0.5]]])

    scores = qbc_kl_scores(members)

    assert scores == pytest.approx([(0.091516 + 0.081093) / 2, 0.0], abs=1e-6)


def test_density_weight_of_a_hand_computed_pool():
    # Unit rows e1, e1, e2: mean (2/3, 1/3); similarities 2/3, 2/3, 1/3 → density (1 + s) / 2 = 5/6, 5/6, 2/3.
    embeddings = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])

    scores = density_weighted_scores(np.array([1.0, 0.5, 1.0]), embeddings, beta=1.0)

    assert scores == pytest.approx([5 / 6, 5 / 12, 2 / 3])


def test_density_equals_the_naive_pairwise_computation():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(40, 6)).astype(np.float32)
    informativeness = rng.random(40)

    scores = density_weighted_scores(informativeness, embeddings, beta=2.0)

    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    naive = informativeness * ((1 + (unit @ unit.T).mean(axis=1)) / 2) ** 2
    assert scores == pytest.approx(naive, rel=1e-5)


def test_tree_entropy_counts_doubt_between_departments_at_every_level():
    proba = np.array([[0.5, 0.5, 0.0, 0.0, 0.0],   # siblings A1 / A2: level 1 certain (A), level 2 ln 2
                      [0.5, 0.0, 0.5, 0.0, 0.0],   # A1 / B1: ln 2 at both levels
                      [0.0, 0.0, 0.0, 0.0, 1.0]])  # C, certain at both levels

    assert tree_entropy_scores(proba, ancestors=TREE) == pytest.approx([LN2, 2 * LN2, 0.0])
    assert tree_entropy_scores(proba, ancestors=TREE, level_weights=[2.0, 1.0]) == pytest.approx(
        [LN2, 3 * LN2, 0.0])


def test_tree_entropy_rejects_a_weight_per_level_mismatch():
    with pytest.raises(ValueError, match="one weight per level"):
        tree_entropy_scores(np.full((1, 5), 0.2), ancestors=TREE, level_weights=[1.0])


def test_registry_has_every_strategy_under_its_name():
    assert set(STRATEGIES) == {"random", "entropy", "margin", "least_confidence", "qbc_vote", "qbc_kl", "density",
                               "tree_entropy"}
    assert all(strategy.name == name and strategy.label for name, strategy in STRATEGIES.items())


def test_every_strategy_scores_through_the_single_entry_point():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(5), size=8)
    inputs = dict(proba=proba, members=np.stack([proba, rng.dirichlet(np.ones(5), size=8)]),
                  embeddings=rng.normal(size=(8, 3)), ancestors=TREE)

    for name in STRATEGIES:
        scores = strategy_scores(name, **inputs, random_state=0)
        assert scores.shape == (8,) and np.all(np.isfinite(scores)), name
    np.testing.assert_allclose(strategy_scores("entropy", proba=proba), entropy_scores(proba))
    np.testing.assert_allclose(strategy_scores("density", proba=proba, embeddings=inputs["embeddings"], base="margin"),
                               density_weighted_scores(1 + margin_scores(proba), inputs["embeddings"]))


@pytest.mark.parametrize(("name", "given", "missing"), [
    ("margin", {}, "proba"),
    ("qbc_kl", {"proba": np.full((2, 2), 0.5)}, "members"),
    ("density", {"proba": np.full((2, 2), 0.5)}, "embeddings"),
    ("tree_entropy", {"proba": np.full((2, 2), 0.5)}, "ancestors"),
])
def test_missing_inputs_raise_a_value_error_naming_them(name, given, missing):
    with pytest.raises(ValueError, match=f"{name}.*needs {missing}"):
        strategy_scores(name, **given)


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown sampling strategy"):
        strategy_scores("bald", proba=np.ones((1, 1)))


def test_batch_select_takes_the_top_scores_and_breaks_ties_by_index():
    scores = np.array([0.1, 0.9, 0.5, 0.9, np.nan, -np.inf, 0.5])

    assert batch_select(scores, batch_size=4).tolist() == [1, 3, 2, 6]
    assert batch_select(scores, batch_size=10).tolist() == [1, 3, 2, 6, 0]  # NaN and −inf never picked
    seeded = batch_select(scores, batch_size=4, random_state=3)
    assert set(seeded.tolist()) == {1, 3, 2, 6}
    np.testing.assert_array_equal(seeded, batch_select(scores, batch_size=4, random_state=3))


def test_batch_diversity_skips_exact_duplicates_of_the_top_product():
    # Products 0-3 are one product four times (top score); 4-6 are distinct and score a little lower.
    embeddings = np.array([[1, 0, 0, 0]] * 4 + [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    scores = np.array([1.0, 1.0, 1.0, 1.0, 0.9, 0.8, 0.7])

    plain = batch_select(scores, batch_size=3, embeddings=embeddings)
    diverse = batch_select(scores, batch_size=3, embeddings=embeddings, diversity=1.0)

    assert plain.tolist() == [0, 1, 2]
    assert diverse.tolist() == [0, 4, 5]


def test_mix_counts_from_shares_and_from_counts():
    assert mix_counts({"random": 0.2, "margin": 0.8}, batch_size=10) == {"random": 2, "margin": 8}
    assert mix_counts({"random": 1, "margin": 2.0}, batch_size=10) == {"random": 3, "margin": 7}  # 3.33 / 6.67
    assert mix_counts({"random": 3, "margin": 7}) == {"random": 3, "margin": 7}
    with pytest.raises(ValueError, match="sum to 10, not batch_size=12"):
        mix_counts({"random": 3, "margin": 7}, batch_size=12)


def test_mixed_batch_has_the_counts_and_no_index_twice():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4), size=50)
    # Every product's margin is tiny except the first ten: margin would pick from 10-49, random from anywhere.
    proba[10:] = [0.3, 0.3, 0.2, 0.2]
    proba[10:, 0] += np.linspace(0, 0.01, 40)
    proba[10:] /= proba[10:].sum(axis=1, keepdims=True)

    indices, names = mixed_batch_select(mix={"margin": 0.7, "random": 0.3}, batch_size=20, proba=proba,
                                        random_state=0)

    assert len(indices) == 20 and len(set(indices.tolist())) == 20
    assert names.tolist() == ["random"] * 6 + ["margin"] * 14
    assert set(indices[names == "margin"].tolist()) <= set(range(10, 50))
    again, _ = mixed_batch_select(mix={"margin": 0.7, "random": 0.3}, batch_size=20, proba=proba, random_state=0)
    np.testing.assert_array_equal(indices, again)


def test_mixed_batch_of_the_whole_pool_uses_every_product_once():
    proba = np.random.default_rng(1).dirichlet(np.ones(3), size=12)

    indices, _ = mixed_batch_select(mix={"random": 6, "entropy": 6}, proba=proba, random_state=0)

    assert sorted(indices.tolist()) == list(range(12))


def test_mixed_batch_rejects_an_unknown_strategy():
    with pytest.raises(ValueError, match="unknown sampling strategies"):
        mixed_batch_select(mix={"coreset": 2}, proba=np.ones((3, 1)))
