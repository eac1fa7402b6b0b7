"""The feed category mapping pages: who may see them, the mode form, table entries through htmx, the type-ahead."""

import pytest

from labelapp.catalogue.models import FeedCategoryMap, FeedCategoryMapEntry, ImportRun, Product
from labelapp.common.roles import LABELLER, REVIEWER
from tests.factories import LabelFactory, ProductFactory, category

pytestmark = pytest.mark.django_db

PAGE = "/imports/sources/shop/categories/"


@pytest.fixture
def shop():
    tops = category("Apparel > Topwear > Tops", exclusive=True)
    tshirts = category("Apparel > Topwear > T-shirts", exclusive=True)
    products = ProductFactory.create_batch(3, source="shop", category_path="Clothing > Tshirts")
    ProductFactory.create_batch(2, source="shop", category_path="Apparel > Topwear > Tops", feed_category=tops)
    LabelFactory(product=products[0], category=tops)
    return {"tops": tops, "tshirts": tshirts, "products": products}


@pytest.fixture
def reviewer(client, make_user):
    client.force_login(make_user("rev", REVIEWER))
    return client


def test_reviewers_see_the_page_and_labellers_do_not(client, make_user, shop):
    client.force_login(make_user("lab", LABELLER))
    assert client.get(PAGE).status_code == 403
    assert client.get("/imports/sources/").status_code == 403
    assert client.post(f"{PAGE}mode/", {"mode": "ancestor"}).status_code == 403
    assert client.post(f"{PAGE}entry/", {"feed_path": "Clothing > Tshirts", "action": "none"}).status_code == 403
    assert not FeedCategoryMap.objects.exists() and not FeedCategoryMapEntry.objects.exists()

    client.force_login(make_user("rev", REVIEWER))
    page = client.get(PAGE)

    assert page.status_code == 200 and b"<html" in page.content
    text = page.content.decode()
    assert "Clothing &gt; Tshirts" in text and "unmatched" in text and 'href="/imports/sources/"' in text
    assert "Apparel &gt; Topwear &gt; T-shirts" in text  # the name suggestion
    assert "1 of 1 labelled" in text  # the label suggestion
    assert client.get("/imports/sources/nobody/categories/").status_code == 404


def test_the_sources_index_and_the_nav_link_to_the_page(reviewer, shop):
    index = reviewer.get("/imports/sources/").content.decode()

    assert 'href="/imports/sources/shop/categories/?unmatched=yes">3</a>' in index
    assert 'href="/imports/sources/">Feed categories</a>' in index


def test_the_unmatched_filter_is_an_htmx_partial(reviewer, shop):
    partial = reviewer.get(PAGE, {"unmatched": "yes"}, HTTP_HX_REQUEST="true").content.decode()

    assert "<html" not in partial and "Clothing &gt; Tshirts" in partial
    assert "<code>Apparel &gt; Topwear &gt; Tops</code>" not in partial


def test_accepting_a_suggestion_with_htmx_maps_the_path_and_answers_its_row(reviewer, shop):
    row = reviewer.post(f"{PAGE}entry/", {"feed_path": "Clothing > Tshirts", "action": "set",
                                          "category": shop["tshirts"].id}, HTTP_HX_REQUEST="true")

    assert row.status_code == 200 and row.content.decode().lstrip().startswith("<tr>")
    assert "table" in row.content.decode() and "Clear" in row.content.decode()
    entry = FeedCategoryMapEntry.objects.get(source="shop")
    assert (entry.feed_path, entry.category_id, entry.updated_by.username) == ("Clothing > Tshirts", shop["tshirts"].id,
                                                                               "rev")
    assert {p.feed_category_id for p in Product.objects.filter(
        category_path="Clothing > Tshirts")} == {shop["tshirts"].id}


def test_the_type_ahead_path_none_and_clear_round_trip(reviewer, shop):
    options = reviewer.get("/imports/category-options/", {"category_path": "topwear > t"}).content.decode()
    assert '<option value="Apparel &gt; Topwear &gt; T-shirts">' in options

    typed = reviewer.post(f"{PAGE}entry/", {"feed_path": "Clothing > Tshirts",  # Enter: no button, so "set"
                                            "category_path": "apparel > topwear > tops"})
    assert typed.status_code == 302
    assert FeedCategoryMapEntry.objects.get().category_id == shop["tops"].id

    unknown = reviewer.post(f"{PAGE}entry/", {"feed_path": "Clothing > Tshirts", "action": "set",
                                              "category_path": "No > Such"}, HTTP_HX_REQUEST="true")
    assert "Choose a category of the tree" in unknown.content.decode()
    assert FeedCategoryMapEntry.objects.get().category_id == shop["tops"].id

    reviewer.post(f"{PAGE}entry/", {"feed_path": "Clothing > Tshirts", "action": "none"}, HTTP_HX_REQUEST="true")
    assert FeedCategoryMapEntry.objects.get().category_id is None
    reviewer.post(f"{PAGE}entry/", {"feed_path": "Clothing > Tshirts", "action": "clear"}, HTTP_HX_REQUEST="true")
    assert not FeedCategoryMapEntry.objects.exists()


def test_the_mode_form_saves_and_remaps(reviewer, shop):
    ProductFactory(source="shop", external_id="deep", category_path="Apparel > Topwear > Tops > Crop")

    response = reviewer.post(f"{PAGE}mode/", {"mode": "cut", "levels": "3"}, follow=True)

    assert "1 products re-mapped" in response.content.decode()
    assert (FeedCategoryMap.objects.get().mode, FeedCategoryMap.objects.get().levels) == ("cut", 3)
    assert Product.objects.get(external_id="deep").feed_category_id == shop["tops"].id
    refused = reviewer.post(f"{PAGE}mode/", {"mode": "cut"}, follow=True)
    assert "levels" in refused.content.decode() and FeedCategoryMap.objects.get().levels == 3


def test_the_import_detail_page_shows_the_category_report(reviewer, shop):
    run = ImportRun.objects.create(kind="products", source="shop", file_name="feed.jsonl", category_report={
        "matched": 2, "unmatched": 3, "without_path": 0, "mapping": "exact",
        "top_unmatched": [{"path": "Clothing > Tshirts", "products": 3}]})

    text = reviewer.get(f"/imports/{run.id}/").content.decode()

    assert "<b>2</b> products matched a category" in text and "<code>Clothing &gt; Tshirts</code>" in text
    assert 'href="/imports/sources/shop/categories/?unmatched=yes"' in text
    assert 'href="/imports/sources/"' in reviewer.get("/imports/").content.decode()
