"""A labeller works through a round in real chromium with the keyboard only: suggestions, search, undo, flag."""
from __future__ import annotations

import time

import pytest

from labelapp.catalogue.models import Label, RuleLabel, SourceTrust, TrustKind
from labelapp.common.roles import LABELLER
from labelapp.workflow.models import QueueItem
from tests.factories import (
    LegacyRuleFactory,
    ModelVersionFactory,
    PredictionFactory,
    category,
    labelling_round_with_items,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _wait_for(condition, *, timeout: float = 10.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def test_a_labeller_labels_five_products_with_the_keyboard_only(page, live_server, login, make_user):
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    jeans = category("Apparel > Bottomwear > Jeans", exclusive=True)
    watches = category("Accessories > Watches > Watches", exclusive=True)
    for n in range(40):  # a realistic list for the type-ahead to filter
        category(f"Home > Decor > Ornament {n}", exclusive=True)
    version = ModelVersionFactory()
    round, items = labelling_round_with_items(6, round_kwargs={"model_version": version})
    for n, item in enumerate(items):
        item.product.title = f"Product number {n}"
        item.product.save()
        PredictionFactory(model_version=version, product=item.product, category=shirts, confidence=0.7,
                          top_k=[[shirts.pk, 0.7], [jeans.pk, 0.2], [watches.pk, 0.1]])
    labeller = make_user("lab", LABELLER)
    title = page.locator("#current .label-title")

    login("lab")
    page.goto(f"{live_server.url}/label/")
    page.wait_for_function("() => document.querySelectorAll('#preload .label-card').length === 1")
    assert title.inner_text() == "Product number 0"
    page.keyboard.press("?")
    assert page.locator("#labelling-help").is_visible()
    page.keyboard.press("?")

    # 1: the model's first suggestion. The next product was preloaded: it is on screen at once.
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    assert title.inner_text() == "Product number 1"

    # 2: search every category, pick with the arrows and Enter, submit with Enter.
    page.wait_for_function("() => document.querySelectorAll('#preload .label-card').length === 1")
    page.keyboard.press("/")
    page.keyboard.type("jea")
    page.wait_for_selector("#current .typeahead-results li[aria-selected=true]")
    assert page.locator("#current .typeahead-results li").first.inner_text() == jeans.full_path
    page.keyboard.press("Enter")
    assert page.locator("#current li.searched .path").inner_text() == jeans.full_path
    page.keyboard.press("Enter")
    assert title.inner_text() == "Product number 2"

    # 3: none fits.
    page.wait_for_function("() => document.querySelectorAll('#preload .label-card').length === 1")
    page.keyboard.press("n")
    page.keyboard.press("Enter")
    assert title.inner_text() == "Product number 3"

    # 4: the second suggestion — then undo it: the product comes back, and gets the third suggestion instead.
    page.wait_for_function("() => document.querySelectorAll('#preload .label-card').length === 1")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    assert title.inner_text() == "Product number 4"
    page.keyboard.press("u")
    page.wait_for_function("() => document.querySelector('#current .label-title').innerText === 'Product number 3'")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    assert title.inner_text() == "Product number 4"

    # 5: flag it with a note; Enter in the note submits.
    page.wait_for_function("() => document.querySelectorAll('#preload .label-card').length === 1")
    page.keyboard.press("1")
    page.keyboard.press("f")
    page.keyboard.type("two products in one photo")
    page.keyboard.press("Enter")
    assert title.inner_text() == "Product number 5"

    # Enter without a pick explains what to do instead of submitting. Wait for the flagged submit's answer (it
    # swaps the message box too) first: on a loaded machine it can land after the key and clear the message.
    page.wait_for_load_state("networkidle")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#labelling-message').innerText.includes('Pick a category first')",
        timeout=10_000)

    def labels():
        return {label.product.title: label for label in Label.objects.select_related("product", "category")
                .filter(undone=False)}

    _wait_for(lambda: len(labels()) == 5, message="the five labels were not all recorded")
    current = labels()
    assert {title: (label.category.name if label.category else None) for title, label in current.items()} == {
        "Product number 0": "Shirts", "Product number 1": "Jeans", "Product number 2": None,
        "Product number 3": "Watches", "Product number 4": "Shirts"}
    assert all(label.labeller == labeller and label.context.round == round and label.context.time_spent_ms > 0
               for label in current.values())
    assert current["Product number 4"].note == "two products in one photo"
    assert QueueItem.objects.get(product__title="Product number 4").flagged
    undone = Label.objects.get(undone=True)
    assert (undone.product.title, undone.category) == ("Product number 3", jeans)
    _wait_for(lambda: "5</span> of 6 labelled" in page.locator("#labelling-progress").inner_html(),
              message="the progress was not updated")


def _many_categories(n: int) -> None:
    """Add n exclusive leaves under one node in three statements (the type-ahead reads id and path only)."""
    from django.contrib.postgres.fields import ArrayField
    from django.db.models import BigIntegerField, F, Func, Value

    from labelapp.catalogue.models import Category

    parent = category("Home > Decor", exclusive=False)
    Category.objects.bulk_create([
        Category(external_id=f"ornament-{i}", name=f"Ornament {i}", parent=parent, depth=3, is_exclusive=True,
                 full_path=f"Home > Decor > Ornament {i}", level2_id=parent.pk) for i in range(n)])
    Category.objects.filter(parent=parent).update(
        level3_id=F("id"), lineage=Func(Value(parent.lineage, output_field=ArrayField(BigIntegerField())), F("id"),
                                        function="array_append", output_field=ArrayField(BigIntegerField())))
    Category.objects.filter(pk=parent.pk).update(is_leaf=False)


def test_skip_a_cold_start_without_suggestions_and_a_search_over_1200_categories(page, live_server, login,
                                                                                   make_user):
    category("Apparel > Topwear > Shirts", exclusive=True)
    _many_categories(1200)
    round, items = labelling_round_with_items(3)
    for n, item in enumerate(items):
        item.product.title = f"Cold product {n}"
        item.product.save()
    make_user("lab", LABELLER)

    login("lab")
    page.goto(f"{live_server.url}/label/")
    assert "No model suggestions yet" in page.locator("#current").inner_text()
    page.wait_for_function("() => document.querySelectorAll('#preload .label-card').length === 1")
    page.keyboard.press("s")

    assert page.locator("#current .label-title").inner_text() == "Cold product 1"
    _wait_for(lambda: QueueItem.objects.get(pk=items[0].pk).status == "pending")
    assert not Label.objects.exists()

    # The whole list is in the browser: filtering 1,201 paths on a keystroke takes milliseconds, no request.
    page.wait_for_function("() => document.querySelector('#current .typeahead-input') !== null")
    page.keyboard.press("/")
    page.keyboard.type("ornament 119")
    page.wait_for_selector("#current .typeahead-results li[aria-selected=true]")
    results = page.locator("#current .typeahead-results li")
    assert results.count() == 8  # Ornament 119 and 1190…1199 match: the best eight are shown, shortest first
    assert results.first.inner_text() == "Home > Decor > Ornament 119"
    elapsed_ms = page.evaluate("""() => {
        const input = document.querySelector('#current .typeahead-input');
        const started = performance.now();
        for (const text of ['o', 'or', 'orn', 'orna', 'ornam', 'orname', 'ornamen', 'ornament', 'ornament 5']) {
            input.value = text;
            input.dispatchEvent(new Event('input', {bubbles: true}));
        }
        return (performance.now() - started) / 9;
    }""")
    assert elapsed_ms < 30, f"{elapsed_ms:.1f} ms a keystroke"


def test_a_rules_category_is_offered_on_the_card_and_one_key_labels_with_it(page, live_server, login, make_user):
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    jeans = category("Apparel > Bottomwear > Jeans", exclusive=True)
    version = ModelVersionFactory()
    round, items = labelling_round_with_items(2, round_kwargs={"model_version": version})
    product = items[0].product
    rule = LegacyRuleFactory(category=shirts)
    RuleLabel.objects.create(product=product, category=shirts, rule=rule)
    SourceTrust.objects.create(kind=TrustKind.RULE, rule=rule, precision=0.92, labelled=50, correct=46)
    # The model is sure of the wrong category; the rule names the right one, with its measured precision.
    PredictionFactory(model_version=version, product=product, category=jeans, top_k=[[jeans.pk, 0.55]])
    make_user("lab", LABELLER)

    login("lab")
    page.goto(f"{live_server.url}/label/")
    card = page.locator("#current")
    first = card.locator("ol.suggestions li").first
    assert shirts.full_path in first.inner_text() and "rule 92 %" in first.inner_text()
    assert first.locator("input[data-key='1']").get_attribute("value") == str(shirts.pk)
    page.wait_for_function("() => document.querySelectorAll('#preload .label-card').length === 1")
    page.keyboard.press("1")
    page.keyboard.press("Enter")

    _wait_for(lambda: Label.objects.filter(product=product).exists(), message="the label was not recorded")
    assert Label.objects.get(product=product).category == shirts
