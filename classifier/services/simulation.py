"""Active-learning simulation on the catalogue: the labelling loop with known labels as the oracle, no UI.

The same sampling strategies (classifier.core.sampling) and the same training code (ProductClassifier with the
configured feature config) as the labelling rounds; the pool is the dev split, accuracy is measured on the test
split. Results go to a CSV and a PNG under ARTEFACT_ROOT/simulations/ (the review pages chart them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from django.conf import settings
from django.utils import timezone

from classifier.core.architectures import config_for_architecture
from classifier.core.config import FeatureConfig, config_loads
from classifier.core.estimator import ProductClassifier
from classifier.core.frames import ProductFrame, Targets
from classifier.core.sampling import STRATEGIES
from classifier.core.simulation import curves_plot_png, curves_to_csv, simulate, summarise
from classifier.services.dataset import catalogue_targets_read, class_ancestors, dev_test_rows, products_frame
from classifier.services.leaks import FEED_LABELS, feed_labelled, feed_leak_guard
from classifier.services.runs import classifier_settings
from labelapp.catalogue.models import Product
from similarity.selectors.settings import similarity_settings

ORACLES = ("labels", "feed")
ORACLE_FEED = "of the oracle's answers are the feed category (--oracle feed)"


@dataclass
class SimulationOutcome:
    records: list[dict]
    summary: dict
    csv_path: Path
    png_path: Path
    pool: int
    test: int
    classes: int
    baseline: str = "random"
    notes: list[str] = field(default_factory=list)


def strategy_parse(text: str) -> str | dict[str, float]:
    """Return a strategy name, or a mix from "margin:0.8+random:0.2"."""
    if "+" not in text and ":" not in text:
        return text
    mix = {}
    for part in text.split("+"):
        name, _, share = part.partition(":")
        mix[name.strip()] = float(share) if share else 1.0
    return mix


def simulation_run(*, strategies: Sequence[str], rounds: int, batch_size: int, seed_size: int,
                   objectives: Sequence[str] = ("exclusive",), repeats: int = 1, oracle: str = "labels",
                   architecture: str | None = None, epochs: int | None = None, diversity: float = 0.0,
                   out_dir: Path | None = None, feature_config: str | None = None, strict: bool = False,
                   progress: Callable[[dict], None] | None = None) -> SimulationOutcome:
    """Simulate each strategy `repeats` times (seeds 0…repeats-1); write CSV + PNG; return records and summary.

    oracle "labels": the products' current human labels are the truth (products without one are left out);
    "feed": the feed category where it is an exclusive category (a trusted catalogue such as Myntra).
    `feature_config` is TOML text (default: the CLASSIFIER_FEATURE_CONFIG file). Inputs that read the field the
    oracle's answers come from are dropped (`notes` says so), or refused with `strict` (classifier.services.leaks).
    """
    if oracle not in ORACLES:
        raise ValueError(f"oracle must be one of {ORACLES}")
    parsed = _strategies_parse(strategies)
    if set(objectives) - {"exclusive", "rule"} or "exclusive" not in objectives:
        raise ValueError("objectives must be exclusive or exclusive,rule")
    defaults = classifier_settings()
    architecture = architecture or defaults["architecture"]
    config_text = feature_config if feature_config is not None else defaults["feature_config"].read_text("utf-8")
    config = config_for_architecture(config_loads(config_text), architecture)
    pool = _pool_build(oracle=oracle, config=config, objectives=objectives, seed_size=seed_size,
                       batch_size=batch_size)
    guard = feed_leak_guard(config=config, feed_labels=pool.feed_labels, strict=strict,
                            labels=ORACLE_FEED if oracle == "feed" else FEED_LABELS)
    config = guard.config
    epochs_for = epochs or defaults["epochs"]

    def make_classifier(n_labelled: int) -> ProductClassifier:
        return ProductClassifier(config=config, architecture=architecture, objectives=tuple(objectives),
                                 epochs=epochs_for, batch_size=min(defaults["batch_size"], max(16, n_labelled // 4)),
                                 learning_rate=defaults["learning_rate"], validation_fraction=0.0, random_state=0)

    ancestors = class_ancestors(pool.classes)
    records = []
    for strategy in parsed:
        for seed in range(repeats):
            records += simulate(X=pool.X, y=pool.y, classes=[str(c) for c in pool.classes], X_test=pool.X_test,
                                y_test=pool.y_test, strategy=strategy, rounds=rounds, batch_size=batch_size,
                                seed_size=seed_size, make_classifier=make_classifier,
                                rule_targets=pool.rule_targets, ancestors=ancestors, diversity=diversity,
                                random_state=seed, progress=progress)
    csv_path, png_path = _curves_write(records, out_dir=out_dir, title=(
        f"Active learning on the catalogue ({'+'.join(objectives)}, {architecture}, "
        f"{repeats} seed{'s' * (repeats > 1)})"), objectives=objectives)
    return SimulationOutcome(records=records, summary=summarise(records), csv_path=csv_path, png_path=png_path,
                             pool=len(pool.y), test=len(pool.y_test), classes=len(pool.classes),
                             notes=list(guard.warnings))


def _strategies_parse(strategies: Sequence[str]) -> list[str | dict[str, float]]:
    """Return the parsed strategies (names or mixes); raise ValueError naming any unknown strategy."""
    parsed = [strategy_parse(text) for text in strategies]
    for strategy in parsed:
        names = [strategy] if isinstance(strategy, str) else list(strategy)
        unknown = set(names) - set(STRATEGIES)
        if unknown:
            raise ValueError(f"unknown strategies {sorted(unknown)}; choose among {sorted(STRATEGIES)}")
    return parsed


@dataclass
class _Pool:
    """The products the oracle knows: dev (the pool to label) and test, as frames and class indices [n]."""

    X: ProductFrame
    y: np.ndarray
    X_test: ProductFrame
    y_test: np.ndarray
    classes: list[int]
    rule_targets: Targets | None
    feed_labels: int = 0  # how many of the oracle's answers (pool and test) are the feed category


def _pool_build(*, oracle: str, config: FeatureConfig, objectives: Sequence[str], seed_size: int,
                batch_size: int) -> _Pool:
    """Return the oracle's dev and test products; raise ValueError when there are too few for the rounds."""
    image = any(spec.kind == "dense" for spec in config.fields)
    image_version = similarity_settings().model_version if image else ""
    truth, from_feed = _oracle(oracle)
    dev, test = dev_test_rows()
    dev = [row for row in dev if row["id"] in truth]
    test = [row for row in test if row["id"] in truth]
    if len(dev) < seed_size + batch_size or not test:
        raise ValueError(f"the oracle knows {len(dev)} dev and {len(test)} test products: not enough for a seed set "
                         f"of {seed_size} plus batches of {batch_size} and a test set")
    classes = sorted({truth[row["id"]] for row in dev + test})
    index = {category_id: position for position, category_id in enumerate(classes)}
    X, X_test = (products_frame(rows=rows, image_model_version=image_version, image=image) for rows in (dev, test))
    return _Pool(X=X, y=np.array([index[truth[row["id"]]] for row in dev]), X_test=X_test,
                 y_test=np.array([index[truth[row["id"]]] for row in test]), classes=classes,
                 rule_targets=_rule_targets(dev) if "rule" in objectives else None,
                 feed_labels=sum(1 for row in dev + test if row["id"] in from_feed))


def _rule_targets(dev: list[dict]) -> Targets:
    """Return the legacy rules' labels of the dev products, for the rule head (known for the whole pool)."""
    targets = catalogue_targets_read()
    rule_index = {category_id: j for j, category_id in enumerate(targets.rule_classes)}
    rule = np.zeros((len(dev), len(rule_index)), np.float32)
    for i, row in enumerate(dev):
        for category_id in targets.rule.get(row["id"], ()):
            rule[i, rule_index[category_id]] = 1.0
    return Targets(rule=rule, rule_known=rule.any(axis=1), rule_classes=[str(c) for c in targets.rule_classes])


def _curves_write(records: list[dict], *, out_dir: Path | None, title: str,
                  objectives: Sequence[str]) -> tuple[Path, Path]:
    """Write the records as a CSV and their curves as a PNG (default folder ARTEFACT_ROOT/simulations)."""
    out_dir = out_dir or Path(settings.ARTEFACT_ROOT) / "simulations"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"simulation-{timezone.now():%Y%m%d-%H%M%S}-{'+'.join(objectives)}"
    csv_path, png_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.png"
    curves_to_csv(csv_path, records)
    curves_plot_png(png_path, records, title=title)
    return csv_path, png_path


def _oracle(oracle: str) -> tuple[Mapping[int, int], set[int]]:
    """Return product id → true exclusive category id, and the ids whose answer is their feed category."""
    if oracle == "labels":
        targets = catalogue_targets_read(weak=False)
        return targets.exclusive, feed_labelled(targets=targets)
    truth = dict(Product.objects.filter(feed_category__is_exclusive=True).values_list("id", "feed_category_id"))
    return truth, set(truth)
