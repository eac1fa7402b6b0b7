"""Staff browse the catalogue in a real browser: login, htmx search, detail page, category tree."""
import pytest

from labelapp.catalogue.models import RuleLabel
from labelapp.common.roles import LABELLER
from tests.factories import LegacyRuleFactory, ProductFactory, category

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_labeller_searches_products_with_htmx_and_opens_one(page, live_server, login, make_user):
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    linen = ProductFactory(title="Linen Summer Shirt", category=shirts, level2=shirts.level2)
    ProductFactory(title="Wool Winter Scarf")
    rule = LegacyRuleFactory(name="shirt keyword", category=shirts)
    RuleLabel.objects.create(product=linen, category=shirts, rule=rule)
    make_user("lab", LABELLER)

    login("lab")
    page.click("text=Products")
    assert page.locator(".product-card").count() == 2
    page.fill("input[name=q]", "linen")
    # htmx swaps the results in place after the debounce; the page itself is not reloaded.
    page.wait_for_function("document.querySelectorAll('.product-card').length === 1")
    assert "q=linen" in page.url
    page.click("text=Linen Summer Shirt")

    assert page.locator("h1").inner_text() == "Linen Summer Shirt"
    assert "by rule “shirt keyword”" in page.locator(".rule-labels").inner_text()


def test_category_tree_opens_nodes_in_place(page, live_server, login, make_user):
    category("Apparel > Topwear > Shirts", exclusive=True)
    make_user("lab", LABELLER)

    login("lab")
    page.goto(f"{live_server.url}/categories/")
    page.click("text=▸ Apparel")
    page.wait_for_selector("text=▸ Topwear")
    page.click("text=▸ Topwear")
    page.wait_for_selector("ul.tree >> text=Shirts")

    assert page.locator("ul.tree").inner_text().count("Shirts") == 1
    assert page.locator("ul.tree [title=exclusive]").count() == 1
