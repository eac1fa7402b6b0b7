"""The simulated labelling loop on a tiny synthetic catalogue, with the production classifier; no Django."""

import numpy as np
import pytest

from classifier.core.simulation import curves_plot_png, curves_to_csv, labels_to_reach, simulate, summarise

CLASS_WORDS = (("shirt", "collar", "cotton", "formal"), ("jeans", "denim", "slim", "stretch"),
               ("watch", "dial", "steel", "analog"), ("shoe", "lace", "sole", "sneaker"))
NOISE_WORDS = ("red", "blue", "classic", "new", "men", "women", "black", "pack")
CLASSES = ("shirts", "jeans", "watches", "shoes")
SEED, BATCH, ROUNDS = 16, 16, 2


def _catalogue(n: int, *, seed: int):
    """Return (ProductFrame, class index int [n]) whose titles hold two class words and two noise words."""
    from classifier.core.frames import ProductFrame

    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    titles = [" ".join(rng.permutation([*rng.choice(CLASS_WORDS[c], 2, replace=False),
                                        *rng.choice(NOISE_WORDS, 2, replace=False)])) for c in y]
    return ProductFrame(title=titles), y


@pytest.fixture(scope="module")
def pool():
    X, y = _catalogue(300, seed=0)
    X_test, y_test = _catalogue(100, seed=1)
    return dict(X=X, y=y, classes=CLASSES, X_test=X_test, y_test=y_test)


@pytest.fixture(scope="module")
def make_classifier(title_only_config):
    from classifier.core.estimator import ProductClassifier

    config = title_only_config.with_model(hidden_units=16, dropout=0.0)
    def make(n_labelled: int, **objectives) -> ProductClassifier:
        return ProductClassifier(config=config, architecture="dnn", epochs=5, batch_size=16, learning_rate=0.05,
                                 validation_fraction=0.0, random_state=0, **objectives)

    return make


@pytest.fixture(scope="module")
def margin_curve(pool, make_classifier):
    progress = []
    records = simulate(**pool, strategy="margin", rounds=ROUNDS, batch_size=BATCH, seed_size=SEED,
                       make_classifier=make_classifier, random_state=0, progress=progress.append)
    return records, progress


def test_labels_grow_by_one_batch_per_round(margin_curve):
    records, progress = margin_curve

    assert [r["labels"] for r in records] == [SEED, SEED + BATCH, SEED + 2 * BATCH]
    assert [r["round"] for r in records] == [0, 1, 2]
    assert progress == records
    assert all(r["strategy"] == "margin" and r["seed"] == 0 and r["seconds"] > 0 for r in records)


def test_no_product_is_picked_twice(margin_curve):
    records, _ = margin_curve

    picked = np.concatenate([r["picked"] for r in records])

    assert len(picked) == ROUNDS * BATCH and len(set(picked.tolist())) == len(picked)
    assert len(records[-1]["picked"]) == 0  # the last fit only measures


def test_accuracy_is_recorded_and_well_above_chance(margin_curve):
    records, _ = margin_curve

    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 for r in records)
    assert records[-1]["accuracy"] > 0.6  # chance is 0.25


def test_a_mix_with_diversity_on_the_model_embeddings_labels_distinct_products(pool, make_classifier):
    records = simulate(**pool, strategy={"random": 0.25, "density": 0.75}, rounds=1, batch_size=BATCH,
                       seed_size=SEED, make_classifier=make_classifier, diversity=0.5, random_state=1)

    assert [r["labels"] for r in records] == [SEED, SEED + BATCH]
    assert records[0]["strategy"] == "random:0.25+density:0.75"
    assert len(set(records[0]["picked"].tolist())) == BATCH


def test_committee_with_the_rule_objective_trains_on_the_whole_pool(pool, make_classifier):
    from classifier.core.frames import Targets

    rule = np.eye(len(CLASSES), dtype=np.float32)[pool["y"]]
    rule_targets = Targets(rule=rule, rule_known=np.arange(len(rule)) % 2 == 0, rule_classes=CLASSES)
    fitted_sizes = []

    def make_recording_classifier(n_labelled):
        classifier = make_classifier(n_labelled, objectives=("exclusive", "rule"))
        fit = classifier.fit
        classifier.fit = lambda X, y: (fitted_sizes.append((len(X), int((y.exclusive >= 0).sum()))), fit(X, y))[1]
        return classifier

    records = simulate(**pool, strategy="qbc_vote", rounds=1, batch_size=BATCH, seed_size=SEED,
                       make_classifier=make_recording_classifier, rule_targets=rule_targets, committee_size=2,
                       random_state=2)

    assert [r["labels"] for r in records] == [SEED, SEED + BATCH]
    # Round 0: the model and two bootstrap members, each on all 300 products with 16 labelled; then the final fit.
    assert fitted_sizes == [(300, SEED)] * 3 + [(300, SEED + BATCH)]


def test_unknown_strategy_is_rejected_before_any_fit(pool, make_classifier):
    with pytest.raises(ValueError, match="unknown sampling strategies"):
        simulate(**pool, strategy="coreset", rounds=1, batch_size=BATCH, seed_size=SEED,
                 make_classifier=make_classifier)


def test_labels_to_reach_on_a_toy_curve():
    curve = [(300, 0.71), (100, 0.5), (200, 0.7), (400, 0.69)]

    assert labels_to_reach(curve, 0.7) == 200
    assert labels_to_reach(curve, 0.5) == 100
    assert labels_to_reach(curve, 0.72) is None


def _toy_results():
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        for labels, random_accuracy, margin_accuracy in ((100, 0.5, 0.55), (200, 0.6, 0.7), (300, 0.7, 0.75)):
            rows.append(dict(strategy="random", seed=seed, round=labels // 100 - 1, labels=labels,
                             accuracy=random_accuracy + shift, macro_f1=0.5, seconds=1.0))
            rows.append(dict(strategy="margin", seed=seed, round=labels // 100 - 1, labels=labels,
                             accuracy=margin_accuracy + shift, macro_f1=0.5, seconds=1.0))
    return rows


def test_summarise_finds_the_labels_to_reach_random_and_the_saving():
    summary = summarise(_toy_results())

    assert summary["random"]["mean_accuracy"] == pytest.approx([0.51, 0.61, 0.71])
    assert summary["random"]["std_accuracy"] == pytest.approx([0.01, 0.01, 0.01])
    assert summary["random"]["repeats"] == 2
    # Random's final mean is 0.71; margin's mean reaches it at 200 labels (0.71): 300 / 200 = 1.5x.
    assert summary["margin"]["labels_to_baseline"] == 200
    assert summary["margin"]["saving"] == pytest.approx(1.5)
    assert summary["random"]["labels_to_baseline"] == 300


def test_curves_are_written_as_csv_and_png(tmp_path, margin_curve):
    results = _toy_results() + margin_curve[0]

    curves_to_csv(tmp_path / "curves.csv", results)
    curves_plot_png(tmp_path / "curves.png", results, title="toy")

    lines = (tmp_path / "curves.csv").read_text().splitlines()
    assert lines[0] == "strategy,seed,round,labels,accuracy,macro_f1,seconds"
    assert len(lines) == 1 + len(results)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _PriorClassifier:
    """A stand-in classifier predicting the labelled class frequencies; records the size of every prediction."""

    predicted_sizes: list[int] = []

    def fit(self, X, y):
        self.prior_ = np.bincount(y.exclusive[y.exclusive >= 0], minlength=len(y.classes)) / max(1, len(y))
        return self

    def predict_proba(self, X):
        self.predicted_sizes.append(len(X))
        return {"exclusive": np.tile(self.prior_, (len(X), 1))}


def test_random_sampling_never_predicts_the_pool(pool):
    _PriorClassifier.predicted_sizes = []

    records = simulate(**pool, strategy="random", rounds=3, batch_size=BATCH, seed_size=SEED,
                       make_classifier=lambda n_labelled: _PriorClassifier(), random_state=3)

    assert [r["labels"] for r in records] == [SEED + k * BATCH for k in range(4)]
    assert _PriorClassifier.predicted_sizes == [len(pool["X_test"])] * 4
