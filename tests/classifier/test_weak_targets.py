"""Weak targets: which products get one, from which source, weighted by that source's measured precision."""
from __future__ import annotations

import numpy as np
import pytest

from classifier.core.estimator import masked_targets
from classifier.core.frames import Targets
from classifier.services.dataset import PRIOR_PRECISION, catalogue_targets_read, weak_targets_read
from labelapp.catalogue.models import RuleLabel, SourceTrust, Split, TrustKind
from tests.factories import LabelFactory, LegacyRuleFactory, ProductFactory, category

pytestmark = pytest.mark.django_db


def _ruled(*categories, **product):
    made = ProductFactory(split=product.pop("split", Split.DEV), **product)
    for node in categories:
        RuleLabel.objects.create(product=made, category=node, rule=LegacyRuleFactory(category=node))
    return made


def test_weak_targets_are_chosen_weighted_and_masked_as_specified():
    shirts, jeans = category("Apparel > Shirts", exclusive=True), category("Apparel > Jeans", exclusive=True)
    topwear = category("Apparel > Topwear", exclusive=False)
    one_rule = _ruled(shirts)
    two_rules = _ruled(shirts, jeans)                       # the rules disagree: no weak target
    parent_only = _ruled(topwear)                           # not an exclusive category: no weak target
    labelled = _ruled(shirts)
    LabelFactory(product=labelled, category=jeans)           # a human label: no weak target
    fed = ProductFactory(split=Split.DEV, source="shop", feed_category=jeans)
    both = _ruled(shirts, source="shop", feed_category=jeans)  # rule and feed disagree: the more precise wins
    test_product = _ruled(shirts, split=Split.TEST)          # the test split is never trained on
    SourceTrust.objects.create(kind=TrustKind.FEED_SOURCE, source="shop", precision=0.8)

    weak = weak_targets_read(exclude=[labelled.id])

    assert weak[one_rule.id] == (shirts.id, PRIOR_PRECISION, "rule")  # nothing measured: the uniform prior
    assert weak[fed.id] == (jeans.id, 0.8, "feed") and weak[both.id] == (jeans.id, 0.8, "feed")
    assert not {two_rules.id, parent_only.id, labelled.id, test_product.id} & set(weak)

    rule = RuleLabel.objects.get(product=one_rule).rule
    SourceTrust.objects.create(kind=TrustKind.RULE, rule=rule, precision=0.93)
    assert weak_targets_read()[one_rule.id] == (shirts.id, 0.93, "rule")
    targets = catalogue_targets_read()
    assert labelled.id not in targets.weak and targets.exclusive[labelled.id] == jeans.id
    assert set(targets.classes) == {shirts.id, jeans.id}


def test_exclusive_weights_reach_the_loss_and_unknown_rows_weigh_nothing():
    y = Targets(exclusive=np.array([0, 1, -1]), classes=["a", "b"], exclusive_weight=np.array([1.0, 0.6, 0.9]))

    targets, weights = masked_targets(y, ["exclusive"])

    np.testing.assert_allclose(weights["exclusive"], [1.0, 0.6, 0.0])
    assert targets["exclusive"].tolist() == [0, 1, 0]
    assert y.take([1]).exclusive_weight.tolist() == pytest.approx([0.6])
    with pytest.raises(ValueError, match="weights"):
        Targets(exclusive=np.array([0]), classes=["a"], exclusive_weight=np.array([-1.0]))
