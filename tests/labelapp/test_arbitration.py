"""Arbitration by evidence: a product's category comes from its most precise measured source."""
from __future__ import annotations

import pytest

from labelapp.catalogue.models import CategorySource, LabelStrategy, Product, RuleLabel, SourceTrust, Split, TrustKind
from labelapp.catalogue.services.product_categories import catalogue_accuracy_measure, products_category_refresh
from labelapp.catalogue.services.trust import shrunk_precision, trust_refresh, wilson_interval
from tests.factories import LabelFactory, LegacyRuleFactory, ProductFactory, category

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree():
    return {name: category(f"Apparel > {name}", exclusive=True) for name in ("Shirts", "Jeans", "Shoes")}


def _product(tree, *, feed: str | None = None, rules: tuple[str, ...] = (), model: str | None = None,
             model_precision: float | None = None, source: str = "shop", split: str = Split.DEV) -> Product:
    product = ProductFactory(source=source, split=split, feed_category=tree[feed] if feed else None,
                             model_category=tree[model] if model else None, model_precision=model_precision)
    for name in rules:
        rule = LegacyRuleFactory(category=tree[name], name=f"{name}-{product.pk}")
        RuleLabel.objects.create(product=product, category=tree[name], rule=rule)
    return product


def _trust(*, rule: str | None = None, product: Product | None = None, feed_source: str | None = None,
           precision: float) -> None:
    if rule is not None:
        rule_id = RuleLabel.objects.get(product=product, category__name=rule).rule_id
        SourceTrust.objects.create(kind=TrustKind.RULE, rule_id=rule_id, precision=precision)
    else:
        SourceTrust.objects.create(kind=TrustKind.FEED_SOURCE, source=feed_source, precision=precision)


def _decided(product: Product) -> tuple[str, str, float | None]:
    product.refresh_from_db()
    return product.category.name if product.category else None, product.category_source, product.category_precision


def test_the_more_precise_of_a_measured_rule_and_feed_wins(tree):
    rule_better = _product(tree, feed="Jeans", rules=("Shirts",))
    feed_better = _product(tree, feed="Jeans", rules=("Shoes",), source="other")
    _trust(rule="Shirts", product=rule_better, precision=0.9)
    _trust(rule="Shoes", product=feed_better, precision=0.4)
    _trust(feed_source="shop", precision=0.6)
    _trust(feed_source="other", precision=0.7)

    products_category_refresh()

    assert _decided(rule_better) == ("Shirts", CategorySource.RULE, 0.9)
    assert _decided(feed_better) == ("Jeans", CategorySource.FEED, 0.7)
    rule_better.refresh_from_db()
    assert rule_better.category_rule.category == tree["Shirts"]


def test_a_model_replaces_a_source_only_when_both_are_measured_and_it_is_more_precise(tree):
    more = _product(tree, rules=("Shirts",), model="Jeans", model_precision=0.95)
    less = _product(tree, rules=("Shirts",), model="Jeans", model_precision=0.7)
    unmeasured_model = _product(tree, rules=("Shirts",), model="Jeans", model_precision=None)
    unmeasured_rule = _product(tree, feed="Shirts", model="Jeans", model_precision=0.99, source="new-feed")
    for product in (more, less, unmeasured_model):
        _trust(rule="Shirts", product=product, precision=0.8)

    products_category_refresh()

    assert _decided(more) == ("Jeans", CategorySource.PREDICTION, 0.95)
    assert _decided(less) == ("Shirts", CategorySource.RULE, 0.8)
    assert _decided(unmeasured_model) == ("Shirts", CategorySource.RULE, 0.8)
    # A feed nobody measured yet may be more precise than the model: the model does not replace it.
    assert _decided(unmeasured_rule) == ("Shirts", CategorySource.FEED, None)


def test_a_model_fills_products_no_other_source_categorises(tree):
    alone = _product(tree, model="Shoes", model_precision=None)
    nothing = _product(tree)

    products_category_refresh()

    assert _decided(alone) == ("Shoes", CategorySource.PREDICTION, None)
    assert _decided(nothing) == (None, CategorySource.NONE, None)


def test_unmeasured_sources_keep_the_order_that_held_before_measurement(tree):
    one_rule = _product(tree, feed="Jeans", rules=("Shirts",))
    two_rules = _product(tree, feed="Jeans", rules=("Shirts", "Shoes"))

    products_category_refresh()

    assert _decided(one_rule) == ("Shirts", CategorySource.RULE, None)
    assert _decided(two_rules) == ("Jeans", CategorySource.FEED, None)  # the rules disagree: the feed decides


def test_a_human_label_beats_every_source(tree):
    product = _product(tree, feed="Jeans", rules=("Shirts",), model="Shoes", model_precision=0.99)
    _trust(rule="Shirts", product=product, precision=0.99)
    LabelFactory(product=product, category=tree["Jeans"])

    products_category_refresh()

    assert _decided(product) == ("Jeans", CategorySource.LABEL, None)


def test_the_wilson_interval_and_the_shrinkage_by_hand():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (None, None)
    assert shrunk_precision(0, 0, None) is None
    assert shrunk_precision(3, 4, None) == pytest.approx(4 / 6)  # Beta(1, 1) at the top of the tree
    assert shrunk_precision(2, 2, 0.5) == pytest.approx((2 + 10 * 0.5) / 12)  # two labels barely move a rule


def test_trust_is_measured_on_dev_labels_and_feed_rows_ignore_labels_imported_from_the_feed(tree):
    right = [_product(tree, feed="Shirts", rules=("Shirts",)) for _ in range(3)]
    wrong = _product(tree, feed="Jeans", rules=("Jeans",))
    for product in right + [wrong]:
        LabelFactory(product=product, category=tree["Shirts"], strategy=LabelStrategy.MANUAL)
    imported = _product(tree, feed="Shoes")
    LabelFactory(product=imported, category=tree["Shoes"], strategy=LabelStrategy.IMPORT)
    test_split = _product(tree, feed="Jeans", rules=("Jeans",), split=Split.TEST)
    LabelFactory(product=test_split, category=tree["Shirts"])

    summary = trust_refresh()

    assert summary.evidence == "all"  # fewer than 30 random or imported labels: every label counts
    pooled = SourceTrust.objects.get(kind=TrustKind.RULES)
    assert (pooled.covered, pooled.labelled, pooled.correct) == (5, 4, 3)  # the test split's label is not evidence
    assert pooled.precision == pytest.approx(4 / 6)
    feed = SourceTrust.objects.get(kind=TrustKind.FEED_SOURCE, source="shop")
    assert (feed.covered, feed.labelled, feed.correct) == (6, 4, 3)  # the imported label is not evidence
    shoes = SourceTrust.objects.get(kind=TrustKind.FEED, category=tree["Shoes"])
    assert (shoes.labelled, shoes.precision) == (0, pytest.approx(feed.precision))  # no data: the source's rate


def test_catalogue_accuracy_decides_labelled_test_products_as_if_unlabelled(tree):
    ruled = _product(tree, rules=("Shirts",), split=Split.TEST)
    LabelFactory(product=ruled, category=tree["Shirts"])
    fed = _product(tree, feed="Jeans", split=Split.TEST)
    LabelFactory(product=fed, category=tree["Shoes"])
    answer_in_feed = _product(tree, feed="Shoes", split=Split.TEST)
    LabelFactory(product=answer_in_feed, category=tree["Shoes"], strategy=LabelStrategy.IMPORT)
    _product(tree, rules=("Shirts",), split=Split.TEST)  # no label: not measured

    products_category_refresh()
    current = catalogue_accuracy_measure()
    candidate = catalogue_accuracy_measure(model_rows=[(fed.pk, tree["Shoes"].pk, None),
                                                       (answer_in_feed.pk, tree["Shoes"].pk, None)])

    # The feed names the imported answer: it is hidden there, and nothing else categorises that product.
    assert current.decisions[answer_in_feed.pk] == (None, CategorySource.NONE, False)
    assert (current.labelled, current.correct, current.accuracy) == (3, 1, pytest.approx(1 / 3))
    assert current.by_source == {"rule": (1, 1), "feed": (1, 0), "none": (1, 0)}
    # A candidate model fills the gap; it cannot replace the (unmeasured) feed.
    assert candidate.decisions[answer_in_feed.pk] == (tree["Shoes"].pk, CategorySource.PREDICTION, True)
    assert candidate.decisions[fed.pk] == (tree["Jeans"].pk, CategorySource.FEED, False)
    assert candidate.correct == 2
