"""How should the exclusive head learn from the legacy rules' categories (weak targets)? Measured on full Myntra.

Run:  .venv/bin/python bench/exp_weak_supervision.py [--variants today soft candidates ...] [--seeds 3]
          [--settings zero few only] [--architecture wide_deep] [--limit N] [--out bench/out/exp_weak.jsonl]

No database: the catalogue as bench_trust.py builds it through Django, rebuilt in memory.

* Products: styles_clean.csv (bench_classifier.myntra_read), inputs title + gender, FEATURES of bench_trust.py.
  Test split: split hash digit 0 == 0 (labelapp's split_for); validation slice: the dev products whose next digit
  is 0 (classifier.services.dataset.is_validation), used for early stopping and calibration as the pipeline does.
* Taxonomy: masterCategory > subCategory > articleType, every leaf exclusive (170 leaves: 25 articleType names
  sit under two or three parents, e.g. Apparel > Topwear > Tshirts and Accessories > Belts > Tshirts). The truth
  is the leaf; the feed category is never an input nor a target.
* Rules: labelapp.catalogue.services.rules.rules_bootstrap's, built with the pure engine (no Django): one rule per
  leaf, `title contains_word k1 OR k2 …` with the keywords of `category_name_keywords(leaf name)`, compiled with
  `rules_compile` and matched on every title. Leaves of one name get identical rules, so on a T-shirt the rules
  name both Tshirts leaves: not "covered". (Reproduces bench_trust: rules cover 62.9 % of the test products,
  right on 77.3 % of those.)
* Rule precision, as labelapp.catalogue.services.trust measures it from the dev labels: all rules pooled
  (correct + 1) / (labelled + 2) (Beta(1, 1)), each rule shrunk towards the pool as if it had contributed
  SHRINK_LABELS = 10 labels; with no label the prior PRIOR_PRECISION = 0.5 (dataset.weak_targets_read).
* Training as the pipeline does (classifier/services/pipeline.py): objectives exclusive + rule (the rule head
  learns the rule-named categories of every product a rule fired on), CLASSIFIER_EPOCHS 15, learning rate 3e-3,
  batch 256 (at most a tenth of the fit set, at least 16), patience 2 on the validation slice, exclusive classes
  = the categories with a human label anywhere (dev or test) or a weak target.

Per seed, settings: zero (no human label: G1 model accuracy overall / on the rule-covered test products, G2
card coverage with the model's top-5 and top-9), few (--labels random dev labels + weak targets: G3), only
(--labels-only random dev labels, no weak target: the G3 baseline). Variants: see VARIANTS.
Prints per variant the mean ± half the range over seeds, and appends every fit's figures to --out (JSON lines).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_classifier
from bench_trust import FEATURES

from labelapp.catalogue.rules_engine import RuleDefinition, category_name_keywords, rules_compile

OUT = ROOT / "bench" / "out"
# labelapp.catalogue.services.trust and classifier.services.dataset: the product's own constants.
PRIOR_PRECISION = 0.5
SHRINK_LABELS = 10
MIN_CALIBRATION_LABELS = 30
# config/settings.py defaults (CLASSIFIER_*).
TRAINING = {"epochs": 15, "batch_size": 256, "learning_rate": 3e-3, "patience": 2}
CARD_MODEL_SUGGESTIONS, CARD_KEYS = 5, 9


# --- the catalogue ---------------------------------------------------------------------------------------------


@dataclass
class Catalogue:
    """Products in file order. `truth` int [n] leaf index; `named[i]` the leaves the rules name (sorted tuple)."""

    leaves: list[str]
    frame: object
    truth: np.ndarray
    test: np.ndarray
    validation: np.ndarray
    named: list[tuple[int, ...]]

    def __len__(self) -> int:
        return len(self.truth)


def catalogue_load(limit: int = 0) -> Catalogue:
    """Read Myntra, build the leaf taxonomy and the bootstrap rules, and match them on every title."""
    from classifier.core.frames import ProductFrame

    rows = bench_classifier.myntra_read()
    rows = [row for row in rows if row["masterCategory"] and row["subCategory"]]
    leaves = sorted({" > ".join((row["masterCategory"], row["subCategory"], row["articleType"])) for row in rows})
    if limit:
        rows = rows[:limit]
    leaf_index = {leaf: position for position, leaf in enumerate(leaves)}
    rules = []
    for position, leaf in enumerate(leaves):
        keywords = category_name_keywords(leaf.rsplit(" > ", 1)[-1])
        if keywords:  # rules_bootstrap: a name with no keyword left gets no rule
            rules.append(RuleDefinition.from_dicts(
                rule_id=position, category_id=position, combinator="or",
                conditions=[{"field": "title", "op": "contains_word", "value": keyword} for keyword in keywords]))
    matcher = rules_compile(rules)
    named = [tuple(sorted(category for _, category in matcher.match({"title": row["productDisplayName"]})))
             for row in rows]
    return Catalogue(
        leaves=leaves,
        frame=ProductFrame(title=[row["productDisplayName"] for row in rows], gender=[row["gender"] for row in rows]),
        truth=np.array([leaf_index[" > ".join((row["masterCategory"], row["subCategory"], row["articleType"]))]
                        for row in rows]),
        test=np.array([bench_classifier.split_digit(row["id"]) == 0 for row in rows]),
        validation=np.array([bench_classifier.split_digit(row["id"], digit=1) == 0 for row in rows]),
        named=named)


def rule_case(catalogue: Catalogue, index: int) -> str:
    """Return how the rules speak of a product: one, dup_name (several leaves of one name), several, none."""
    named = catalogue.named[index]
    if not named:
        return "none"
    if len(named) == 1:
        return "one"
    names = {catalogue.leaves[leaf].rsplit(" > ", 1)[-1] for leaf in named}
    return "dup_name" if len(names) == 1 else "several"


# --- rule precision, as labelapp.catalogue.services.trust ------------------------------------------------------


def rule_precisions(catalogue: Catalogue, labels: dict[int, int]) -> tuple[dict[int, float], float | None]:
    """Return (rule (= leaf) → shrunk precision, pooled precision) measured on the human labels of dev products."""
    labelled = collections.Counter()
    correct = collections.Counter()
    for index, leaf in labels.items():
        for rule in catalogue.named[index]:
            labelled[rule] += 1
            correct[rule] += rule == leaf
    total = sum(labelled.values())
    if not total:
        return {}, None
    pooled = (sum(correct.values()) + 1) / (total + 2)
    fired = {rule for named in catalogue.named for rule in named}
    return {rule: (correct[rule] + SHRINK_LABELS * pooled) / (labelled[rule] + SHRINK_LABELS)
            for rule in fired}, pooled


# --- weak targets: the variants ----------------------------------------------------------------------------------


@dataclass
class Weak:
    """Per dev product without a human label: a class (leaf) with weight, or a distribution over leaves with weight."""

    hard: dict[int, tuple[int, float]]
    soft: dict[int, tuple[dict[int, float], float]]


def precision_of(rule: int, precisions: dict[int, float], pooled: float | None) -> float:
    return precisions.get(rule, pooled if pooled is not None else PRIOR_PRECISION)


def weak_today(catalogue: Catalogue, dev_unlabelled: np.ndarray, precisions, pooled, labels=None) -> Weak:
    """dataset.weak_targets_read: the one category the rules name, weighted by the best such rule's precision."""
    return Weak(hard={i: (catalogue.named[i][0], precision_of(catalogue.named[i][0], precisions, pooled))
                      for i in dev_unlabelled if len(catalogue.named[i]) == 1}, soft={})


def weak_soft(catalogue: Catalogue, dev_unlabelled: np.ndarray, precisions, pooled, labels=None) -> Weak:
    """Every product a rule fired on: the named categories in proportion to their rules' precision; weight the best."""
    weak = weak_today(catalogue, dev_unlabelled, precisions, pooled)
    for i in dev_unlabelled:
        if len(catalogue.named[i]) > 1:
            estimates = {leaf: precision_of(leaf, precisions, pooled) for leaf in catalogue.named[i]}
            total = sum(estimates.values())
            weak.soft[i] = ({leaf: value / total for leaf, value in estimates.items()}, max(estimates.values()))
    return weak


def weak_smoothed(catalogue: Catalogue, dev_unlabelled: np.ndarray, precisions, pooled, labels=None) -> Weak:
    """The evidence as P(class | rules): the best precision ρ on the named categories (∝ their precisions), 1 − ρ
    spread evenly over every other class; weight 1 (the row carries the doubt). `smear` marks the rest."""
    weak = Weak(hard={}, soft={})
    for i in dev_unlabelled:
        if catalogue.named[i]:
            estimates = {leaf: precision_of(leaf, precisions, pooled) for leaf in catalogue.named[i]}
            best, total = max(estimates.values()), sum(estimates.values())
            weak.soft[i] = ({**{leaf: best * value / total for leaf, value in estimates.items()}, "smear": 1 - best},
                            1.0)
    return weak


def weak_transition(catalogue: Catalogue, dev_unlabelled: np.ndarray, precisions, pooled, labels=None) -> Weak:
    """The evidence as P(class | the set of categories the rules name): measured on the human labels of the dev
    products whose rules named the same set, shrunk towards `weak_smoothed`'s row as if it had contributed
    SHRINK_LABELS labels (the product's shrinkage); with no such label it is `weak_smoothed`'s row."""
    weak = weak_smoothed(catalogue, dev_unlabelled, precisions, pooled)
    seen = observed_sets(catalogue, labels or {})
    spread_over = len(catalogue.leaves)
    for i, (row, weight) in weak.soft.items():
        counts = seen.get(catalogue.named[i])
        if not counts:
            continue
        n = sum(counts.values())
        smear_each = row["smear"] / (spread_over - (len(row) - 1))
        leaves = {leaf for leaf in row if leaf != "smear"} | set(counts)
        measured = {leaf: (counts[leaf] + SHRINK_LABELS * row.get(leaf, smear_each)) / (n + SHRINK_LABELS)
                    for leaf in leaves}
        weak.soft[i] = ({**measured, "smear": max(0.0, 1.0 - sum(measured.values()))}, weight)
    return weak


@dataclass(frozen=True)
class Variant:
    """How weak targets are built and learned; `self_train`: a second fit adding confident pseudo-labels;
    `human_weight`: "one" (1 each) or "balanced" (the human labels weigh as much in total as the weak targets);
    `finetune`: a second stage continuing from the first fit's weights on the human labels alone;
    `posterior`: with labels, first a model of the human labels alone (p_A), then the weak rows become the posterior
    P(class | title, rules) ∝ p_A(class | title) / P_A(class) × row(class), learned with cross-entropy."""

    build: Callable
    loss: str | None = None
    self_train: bool = False
    human_weight: str = "one"
    finetune: bool = False
    posterior: bool = False
    description: str = ""


VARIANTS = {
    "today": Variant(weak_today, None, description="a: single-category rule targets, weight = rule precision"),
    "soft": Variant(weak_soft, "cross_entropy",
                    description="b: + several-category products as soft targets ∝ rule precision (cross-entropy)"),
    "candidates": Variant(weak_soft, "observation_likelihood",
                          description="b': same targets, partial-label loss −log Σ_named p (model picks within)"),
    "smoothed": Variant(weak_smoothed, "cross_entropy",
                        description="e: label smoothing by rule precision (ρ on the named, 1−ρ on the rest)"),
    "forward": Variant(weak_smoothed, "observation_likelihood",
                       description="d/e: forward correction, uniform noise at rate 1−ρ per rule (Patrini 2017)"),
    "today_self": Variant(weak_today, None, self_train=True, description="c on a"),
    "soft_self": Variant(weak_soft, "cross_entropy", self_train=True, description="c on b"),
    "candidates_self": Variant(weak_soft, "observation_likelihood", self_train=True, description="c on b'"),
    "forward_self": Variant(weak_smoothed, "observation_likelihood", self_train=True, description="c on forward"),
    "candidates_balanced": Variant(weak_soft, "observation_likelihood", human_weight="balanced",
                                   description="d: b' with human labels weighing as much in total as weak targets"),
    "forward_balanced": Variant(weak_smoothed, "observation_likelihood", human_weight="balanced",
                                description="d: forward with human labels weighing as much in total as weak ones"),
    "transition": Variant(weak_transition, "observation_likelihood",
                          description="d: forward correction with P(class | named set) measured on the labels"),
    "transition_soft": Variant(weak_transition, "cross_entropy",
                               description="d: the same rows as soft targets (cross-entropy)"),
    "transition_self": Variant(weak_transition, "observation_likelihood", self_train=True,
                               description="c on transition"),
    "candidates_finetune": Variant(weak_soft, "observation_likelihood", finetune=True,
                                   description="d: b' then fine-tuning on the human labels alone"),
    "transition_finetune": Variant(weak_transition, "observation_likelihood", finetune=True,
                                   description="d: transition then fine-tuning on the human labels alone"),
    "posterior": Variant(weak_transition, "cross_entropy", posterior=True,
                         description="d: rule evidence (transition rows) × a human-label model's evidence (Bayes)"),
}


def observed_sets(catalogue: Catalogue, labels: dict[int, int]) -> dict[tuple[int, ...], collections.Counter]:
    """Return named set → how many human-labelled dev products of that set have each true leaf."""
    seen = collections.defaultdict(collections.Counter)
    for index, leaf in labels.items():
        if catalogue.named[index]:
            seen[catalogue.named[index]][leaf] += 1
    return seen


def posterior_rows(catalogue: Catalogue, indices: np.ndarray, precisions, pooled, labels: dict[int, int],
                   model) -> Weak:
    """Return for the products at `indices` P(leaf | title, rules) ∝ P(leaf | rules) × p(leaf | title) / P(leaf)
    (classifier.core.weak_targets: evidence_rows, evidence_posterior), weight 1 (the row holds the doubt).

    P(leaf | rules): the rules' named set, its precisions and the labels of the same set (`weak_transition`'s row);
    p: the model's (of the human labels) probability, P its mean over the dev products (its class prior); a leaf
    the model does not know gets p = P (the title says nothing about it).
    """
    from classifier.core.weak_targets import evidence_posterior, evidence_rows

    seen = observed_sets(catalogue, labels)
    evidence = evidence_rows([{leaf: precision_of(leaf, precisions, pooled) for leaf in catalogue.named[i]}
                              for i in indices], len(catalogue.leaves),
                             observed=[seen.get(catalogue.named[i]) for i in indices], shrink=SHRINK_LABELS)
    known = [int(c) for c in model.classes_]
    prior = np.full(len(catalogue.leaves), 1.0 / len(catalogue.leaves))
    prior[known] = model.predict_proba(catalogue.frame.take(np.flatnonzero(~catalogue.test)))["exclusive"].mean(axis=0)
    proba = np.tile(prior, (len(indices), 1))
    proba[:, known] = model.predict_proba(catalogue.frame.take(indices))["exclusive"]
    posterior = evidence_posterior(evidence, proba, prior)
    rows = {i: ({leaf: float(mass) for leaf, mass in enumerate(posterior[position]) if mass > 0}, 1.0)
            for position, i in enumerate(indices.tolist())}
    return Weak(hard={}, soft=rows)


# Measured on three seeds (the others once, as screening): see the module docstring for the command.
DEFAULT_VARIANTS = ("today", "candidates", "forward", "candidates_self", "transition", "candidates_finetune",
                    "posterior")


# --- training sets -----------------------------------------------------------------------------------------------


@dataclass
class TrainingSet:
    """The dev products the pipeline trains on (fit + validation) with their targets; indices into the catalogue."""

    indices: np.ndarray
    targets: object
    human: np.ndarray


def training_set(catalogue: Catalogue, *, labels: dict[int, int], weak: Weak | None,
                 pseudo: dict[int, tuple[int, float]] | None = None, human_weight: str = "one") -> TrainingSet:
    """Return the dev products with an exclusive or a rule target, and their Targets (as labelled_set_build)."""
    from classifier.core.frames import Targets

    weak = weak or Weak(hard={}, soft={})
    pseudo = pseudo or {}
    dev = np.flatnonzero(~catalogue.test)
    test_truth = set(catalogue.truth[catalogue.test].tolist())
    weak_classes = ({leaf for leaf, _ in weak.hard.values()} | {leaf for leaf, _ in pseudo.values()}
                    | {leaf for row, _ in weak.soft.values() for leaf in row if leaf != "smear"})
    classes = sorted(test_truth | set(labels.values()) | weak_classes)
    class_index = {leaf: position for position, leaf in enumerate(classes)}
    wanted = np.array([i for i in dev if i in labels or i in weak.hard or i in weak.soft or i in pseudo
                       or catalogue.named[i]], dtype=np.int64)
    exclusive = np.full(len(wanted), -1, np.int64)
    weight = np.zeros(len(wanted), np.float32)
    soft = np.zeros((len(wanted), len(classes)), np.float32) if weak.soft else None
    human = np.zeros(len(wanted), bool)
    for position, i in enumerate(wanted.tolist()):
        if i in labels:
            exclusive[position], weight[position], human[position] = class_index[labels[i]], 1.0, True
        elif i in weak.hard:
            leaf, weight[position] = weak.hard[i]
            exclusive[position] = class_index[leaf]
        elif i in pseudo:
            leaf, weight[position] = pseudo[i]
            exclusive[position] = class_index[leaf]
        elif i in weak.soft:
            row, weight[position] = weak.soft[i]
            smear = row.get("smear", 0.0)
            if smear:
                named = [class_index[leaf] for leaf in row if leaf != "smear"]
                soft[position] = smear / (len(classes) - len(named))
            for leaf, mass in row.items():
                if leaf != "smear":
                    soft[position, class_index[leaf]] = mass
    if human_weight == "balanced" and human.any():
        weak_total = weight[~human].sum()
        weight[human] = max(1.0, weak_total / human.sum())
    rule = np.zeros((len(wanted), len(catalogue.leaves)), np.float32)
    for position, i in enumerate(wanted.tolist()):
        rule[position, list(catalogue.named[i])] = 1.0
    rule_known = rule.any(axis=1)
    rule_classes = sorted({leaf for i in wanted for leaf in catalogue.named[i]})
    rule = rule[:, rule_classes]
    return TrainingSet(indices=wanted, human=human, targets=Targets(
        exclusive=exclusive, classes=[str(c) for c in classes], exclusive_weight=weight, exclusive_soft=soft,
        rule=rule, rule_known=rule_known, rule_classes=[str(c) for c in rule_classes]))


def classifier_fit(catalogue: Catalogue, data: TrainingSet, *, architecture: str, loss: str | None, seed: int,
                   epochs: int, warm=None):
    """Fit as classifier.services.pipeline._train does; calibrate as reports.calibration_fit; return (model, s)."""
    from classifier.core.calibration import temperature_fit
    from classifier.core.config import config_loads
    from classifier.core.estimator import ProductClassifier

    in_validation = catalogue.validation[data.indices]
    if in_validation.sum() < 5 or (~in_validation).sum() < 5:
        in_validation[:] = False
    fit, validation = np.flatnonzero(~in_validation), np.flatnonzero(in_validation)
    batch_size = min(TRAINING["batch_size"], max(16, math.ceil(len(fit) / 10)))
    params = {"config": config_loads(FEATURES), "architecture": architecture, "objectives": ("exclusive", "rule"),
              "epochs": epochs, "batch_size": batch_size, "patience": TRAINING["patience"], "random_state": seed,
              # bench_classifier.LEARNING_RATES: a linear model alone needs a larger step.
              "learning_rate": TRAINING["learning_rate"] * (10 if architecture == "logreg" else 1),
              "validation_fraction": 0.0, "exclusive_loss": loss}
    classifier = (ProductClassifier(**params) if warm is None
                  else warm.set_params(**{**params, "warm_start": True, "config": warm.config}))
    frame = catalogue.frame.take(data.indices)
    started = time.perf_counter()
    classifier.fit(frame.take(fit), data.targets.take(fit),
                   validation_data=(frame.take(validation), data.targets.take(validation)) if len(validation) else None)
    seconds = time.perf_counter() - started
    # reports.calibration_fit: human labels once there are 30, else every hard validation target by its weight.
    targets = data.targets.take(validation)
    known = targets.exclusive >= 0
    human = known & data.human[validation]
    rows = human if human.sum() >= MIN_CALIBRATION_LABELS else known
    if rows.sum() >= MIN_CALIBRATION_LABELS:
        proba = classifier.predict_proba(frame.take(validation[rows]))["exclusive"]
        classifier.temperature_ = temperature_fit(proba, targets.exclusive[rows],
                                                  weights=targets.exclusive_weight[rows])
    return classifier, seconds


def pseudo_labels(catalogue: Catalogue, classifier, data: TrainingSet, *,
                  threshold: float) -> dict[int, tuple[int, float]]:
    """Return dev product → (leaf, calibrated confidence) for the products without any exclusive target whose
    calibrated top probability is at least `threshold` (the rules' precision: the bar a weak target meets)."""
    has_target = set(data.indices[data.targets.exclusive_known].tolist())
    candidates = np.array([i for i in np.flatnonzero(~catalogue.test) if i not in has_target], dtype=np.int64)
    if not len(candidates):
        return {}
    proba = classifier.predict_proba(catalogue.frame.take(candidates))["exclusive"]
    best, confidence = proba.argmax(axis=1), proba.max(axis=1)
    classes = [int(c) for c in classifier.classes_]
    return {int(i): (classes[b], float(c)) for i, b, c in zip(candidates, best, confidence) if c >= threshold}


# --- evaluation --------------------------------------------------------------------------------------------------


def evaluate(catalogue: Catalogue, classifier) -> dict:
    """Return test accuracy overall, on the rule-covered products, per rule case, and the card's coverage."""
    test = np.flatnonzero(catalogue.test)
    proba = classifier.predict_proba(catalogue.frame.take(test))["exclusive"]
    classes = np.array([int(c) for c in classifier.classes_])
    order = classes[np.argsort(-proba, axis=1)]
    truth = catalogue.truth[test]
    right = order[:, 0] == truth
    cases = np.array([rule_case(catalogue, i) for i in test])
    card = {}
    for k in (CARD_MODEL_SUGGESTIONS, CARD_KEYS):
        hits = []
        for row, i in enumerate(test):
            # The card: every exclusive category the rules name, then the model's best, up to k of them and 9 keys.
            offered = list(catalogue.named[i])
            for leaf in order[row, :k]:
                if len(offered) >= CARD_KEYS:
                    break
                if leaf not in offered:
                    offered.append(int(leaf))
            hits.append(truth[row] in offered)
        card[f"card{k}"] = hits
    figures = {"accuracy": float(right.mean()), "covered": float(right[cases == "one"].mean()),
               **{name: float(np.mean(hits)) for name, hits in card.items()}}
    figures.update({f"card5_{case}": float(np.mean(np.array(card["card5"])[cases == case]))
                    for case in ("one", "dup_name", "several", "none") if (cases == case).any()})
    figures.update({f"acc_{case}": float(right[cases == case].mean()) for case in ("one", "dup_name", "several", "none")
                    if (cases == case).any()})
    return figures


def rules_alone(catalogue: Catalogue) -> dict:
    test = np.flatnonzero(catalogue.test)
    cases = collections.Counter(rule_case(catalogue, i) for i in test)
    covered = [i for i in test if len(catalogue.named[i]) == 1]
    in_named = {case: np.mean([catalogue.truth[i] in catalogue.named[i] for i in test
                               if rule_case(catalogue, i) == case]) for case in cases if case != "none"}
    return {"test": len(test), "covered": len(covered) / len(test),
            "right_on_covered": float(np.mean([catalogue.truth[i] == catalogue.named[i][0] for i in covered])),
            "cases": {case: count / len(test) for case, count in cases.items()},
            "truth_among_named": {case: float(value) for case, value in in_named.items()}}


# --- runs --------------------------------------------------------------------------------------------------------


def random_labels(catalogue: Catalogue, count: int, seed: int) -> dict[int, int]:
    """Label `count` random dev products with their true leaf, as a round's random share would."""
    dev = np.flatnonzero(~catalogue.test).tolist()
    picked = random.Random(seed).sample(dev, min(count, len(dev)))
    return {i: int(catalogue.truth[i]) for i in picked}


def run_variant(catalogue: Catalogue, variant: Variant, *, labels: dict[int, int], seed: int, args) -> dict:
    """Train one variant (with its self-training pass) on `labels` + weak targets; return its test figures."""
    precisions, pooled = rule_precisions(catalogue, labels)
    unlabelled = np.array([i for i in np.flatnonzero(~catalogue.test) if i not in labels], dtype=np.int64)
    weak = variant.build(catalogue, unlabelled, precisions, pooled, labels)
    seconds = 0.0
    if variant.posterior and labels:
        model, seconds = classifier_fit(catalogue, training_set(catalogue, labels=labels, weak=None),
                                        architecture=args.architecture, loss=None, seed=seed, epochs=args.epochs)
        with_rules = np.array([i for i in unlabelled if catalogue.named[i]], dtype=np.int64)
        weak = posterior_rows(catalogue, with_rules, precisions, pooled, labels, model)
    data = training_set(catalogue, labels=labels, weak=weak, human_weight=variant.human_weight)
    classifier, more = classifier_fit(catalogue, data, architecture=args.architecture, loss=variant.loss,
                                      seed=seed, epochs=args.epochs)
    seconds += more
    extra = {}
    if variant.self_train:
        threshold = pooled if pooled is not None else PRIOR_PRECISION
        pseudo = pseudo_labels(catalogue, classifier, data, threshold=threshold)
        extra = {"first_pass": evaluate(catalogue, classifier), "pseudo": len(pseudo), "threshold": threshold}
        data = training_set(catalogue, labels=labels, weak=weak, pseudo=pseudo, human_weight=variant.human_weight)
        classifier, more = classifier_fit(catalogue, data, architecture=args.architecture, loss=variant.loss,
                                          seed=seed, epochs=args.epochs)
        seconds += more
    if variant.finetune and labels:
        extra["first_pass"] = evaluate(catalogue, classifier)
        human = data.indices[data.human]
        data = TrainingSet(indices=human, human=np.ones(len(human), bool),
                           targets=dataclasses.replace(data.targets.take(np.flatnonzero(data.human)),
                                                       exclusive_soft=None))
        classifier, more = classifier_fit(catalogue, data, architecture=args.architecture, loss=None, seed=seed,
                                          epochs=args.epochs, warm=classifier)
        seconds += more
    return {**evaluate(catalogue, classifier), **extra, "seconds": seconds, "classes": len(classifier.classes_),
            "weak_hard": len(weak.hard) if weak else 0, "weak_soft": len(weak.soft) if weak else 0,
            "train": len(data.indices),
            "pooled_precision": pooled}


def spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{statistics.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--settings", nargs="+", default=["zero", "few", "only"], choices=["zero", "few", "only"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--architecture", default="wide_deep")
    parser.add_argument("--epochs", type=int, default=TRAINING["epochs"])
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--labels-only", type=int, default=500)
    parser.add_argument("--limit", type=int, default=0, help="only the first N products (development runs)")
    parser.add_argument("--out", type=Path, default=OUT / "exp_weak_supervision.jsonl")
    parser.add_argument("--summarize", nargs="+", type=Path, metavar="JSONL",
                        help="print the summary of earlier runs' records (full data only) instead of training")
    args = parser.parse_args()
    if args.summarize:
        records = [json.loads(line) for path in args.summarize for line in path.read_text().splitlines() if line]
        summary_print([r for r in records if not r["limit"]], rules_alone(catalogue_load()))
        return

    started = time.perf_counter()
    catalogue = catalogue_load(args.limit)
    alone = rules_alone(catalogue)
    print(f"{len(catalogue):,} products, {len(catalogue.leaves)} leaves; rules alone on {alone['test']:,} test "
          f"products: cover {alone['covered']:.1%}, right on {alone['right_on_covered']:.3f} of those; cases "
          + ", ".join(f"{case} {share:.1%}" for case, share in sorted(alone["cases"].items()))
          + "; truth among the named: " + ", ".join(f"{case} {share:.3f}"
                                                    for case, share in sorted(alone["truth_among_named"].items())),
          flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        jobs = []
        if "only" in args.settings:
            jobs.append(("only", "labels_only", random_labels(catalogue, args.labels_only, seed)))
        for name in args.variants:
            if "zero" in args.settings:
                jobs.append(("zero", name, {}))
            if "few" in args.settings:
                jobs.append(("few", name, random_labels(catalogue, args.labels, seed)))
        for setting, name, labels in jobs:
            variant = Variant(lambda *_args: None) if name == "labels_only" else VARIANTS[name]
            figures = run_variant(catalogue, variant, labels=labels, seed=seed, args=args)
            record = {"setting": setting, "variant": name, "seed": seed, "labels": len(labels),
                      "architecture": args.architecture, "limit": args.limit, **figures}
            records.append(record)
            with args.out.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            print(f"  seed {seed} {setting:<4} {name:<20} acc {figures['accuracy']:.3f} "
                  f"covered {figures['covered']:.3f} "
                  f"card5 {figures['card5']:.3f} card9 {figures['card9']:.3f} | "
                  + " ".join(f"{k[4:]} {v:.3f}" for k, v in figures.items() if k.startswith("acc_"))
                  + (f" | 1st pass {figures['first_pass']['accuracy']:.3f}, {figures.get('pseudo', '–')} pseudo-labels"
                     if "first_pass" in figures else "")
                  + f" | {figures['seconds']:.0f} s", flush=True)
    summary_print(records, alone)
    print(f"\nwhole run {time.perf_counter() - started:.0f} s")


def fits_of(name: str, setting: str) -> int:
    """Return how many fits a variant makes: 1, plus the self-training, fine-tuning or human-label model's."""
    if name == "labels_only":
        return 1
    variant = VARIANTS[name]
    return 1 + variant.self_train + (setting != "zero") * (variant.finetune + variant.posterior)


def summary_print(records: list[dict], alone: dict) -> None:
    """Print one row per (setting, variant): mean ± half the range over seeds (the last record of each seed)."""
    latest = {(r["setting"], r["labels"], r["variant"], r["seed"]): r for r in records}
    groups = collections.defaultdict(list)
    for (setting, labels, name, _), record in sorted(latest.items(), key=lambda item: item[0][3]):
        groups[(setting, labels, name)].append(record)
    print(f"\nsummary (test split; mean ± half the range over seeds). Rules alone: right on "
          f"{alone['right_on_covered']:.3f} of the {alone['covered']:.1%} test products they cover (the G1 bar)")
    print("| setting | variant | seeds | accuracy | on covered | card top-5 | card top-9 | s per fit |")
    print("|---|---|---|---|---|---|---|---|")
    order = {"zero": 0, "few": 1, "only": 2}
    for (setting, labels, name), rows in sorted(groups.items(), key=lambda item: (order[item[0][0]], *item[0][1:])):
        fits = fits_of(name, setting)
        print(f"| {setting} ({labels} labels) | {name} | {len(rows)} "
              f"| {spread([r['accuracy'] for r in rows])} "
              f"| {spread([r['covered'] for r in rows])} | {spread([r['card5'] for r in rows])} "
              f"| {spread([r['card9'] for r in rows])} | {spread([r['seconds'] / fits for r in rows])} × {fits} |")


if __name__ == "__main__":
    main()
