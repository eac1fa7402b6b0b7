"""Feed category mapping: modes, table entries, re-mapping existing products, import reports, suggestions."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from labelapp.catalogue.models import (
    CategorySource,
    FeedCategoryMap,
    FeedCategoryMapEntry,
    FeedCategoryMode,
    ImportKind,
    Product,
)
from labelapp.catalogue.services.feed_categories import (
    FeedCategoryResolver,
    FeedCategoryTally,
    FeedMatch,
    How,
    feed_categories_remap,
    feed_category_entry_delete,
    feed_category_entry_set,
    feed_category_map_update,
)
from labelapp.catalogue.services.feed_category_review import (
    CategoryNameIndex,
    feed_path_label_suggestions,
    feed_path_rows,
    feed_path_rows_complete,
    words,
)
from labelapp.catalogue.services.imports.mapping import ImportMapping
from labelapp.catalogue.services.imports.products import products_import
from labelapp.catalogue.services.imports.runs import import_run_create, import_run_report
from labelapp.catalogue.services.labels import label_create
from labelapp.common import events
from tests.factories import LabelFactory, ProductFactory, category

pytestmark = pytest.mark.django_db

MWPD = Path(__file__).resolve().parents[2].parent / "shared/datasets/mwpd-2020"
needs_mwpd = pytest.mark.skipif(not (MWPD / "validation.json").exists(), reason="../shared/datasets/mwpd-2020 absent")


@pytest.fixture
def tree():
    return {
        "curtains": category("Home Furnishing > Curtains & Accessories > Curtains", exclusive=True),
        "furnishing": category("Home Furnishing"),
        "tops": category("Apparel > Topwear > Tops", exclusive=True),
        "tshirts": category("Apparel > Topwear > T-shirts", exclusive=True),
        "jeans": category("Apparel > Bottomwear > Jeans", exclusive=True),
        "watches": category("Accessories > Watches", exclusive=True),
    }


def run_import(tmp_path: Path, records: list[dict], *, source: str = "shop", mapping: dict | None = None):
    path = tmp_path / "feed.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    run = import_run_create(kind=ImportKind.PRODUCTS, file_name=str(path), source=source)
    return products_import(import_run=run, path=path, mapping=ImportMapping.from_dict(mapping) if mapping else None)


def feed(external_id: str, source: str = "shop") -> Product:
    return Product.objects.get(source=source, external_id=external_id)


# ---------------------------------------------------------------------------------------------------------------
# The import: every path shape, and the report


PATH_SHAPES = [
    # (feed value, normalised path, matches the tree exactly)
    ('["Home Furnishing >> Curtains & Accessories >> Curtains"]', "Home Furnishing > Curtains & Accessories > Curtains",
     True),
    (["Apparel >> Topwear >> Tops"], "Apparel > Topwear > Tops", True),
    ('["", "Apparel >> Topwear >> Tops", "Other >> Branch"]', "Apparel > Topwear > Tops", True),
    ('["Apparel > Topwear", "Apparel > Topwear > T-shirts"]', "Apparel > Topwear > T-shirts", True),
    ([["Apparel", "Bottomwear"], ["Apparel", "Bottomwear", "Jeans"]], "Apparel > Bottomwear > Jeans", True),
    ("apparel / TOPWEAR / tops", "apparel > TOPWEAR > tops", True),
    ("Apparel » Topwear › T-shirts", "Apparel > Topwear > T-shirts", True),
    ("Apparel|Bottomwear|Jeans", "Apparel > Bottomwear > Jeans", True),
    ("Accessories \\ Watches", "Accessories > Watches", True),
    ("Accessories // Watches", "Accessories > Watches", True),
    ("['Accessories', 'Watches']", "Accessories > Watches", True),
    ('["Home Furnishing >> Curtains & Accessories >> Curtains', "Home Furnishing > Curtains & Accessories > Curtains",
     True),
    ('["Home Furnishing >> Curtains & Accessories >> Curtains >> Eyelet Curtains"]',
     "Home Furnishing > Curtains & Accessories > Curtains > Eyelet Curtains", False),
    ("Garden > Tools", "Garden > Tools", False),
    ('["Garden >> Tools"]', "Garden > Tools", False),
    ("", "", False),
]


def test_an_import_parses_every_path_shape_and_reports_matched_and_unmatched_paths(tmp_path, tree):
    records = [{"id": str(n), "title": f"product {n}", "category": value}
               for n, (value, _, _) in enumerate(PATH_SHAPES)]

    run = run_import(tmp_path, records)

    for n, (_, path, matches) in enumerate(PATH_SHAPES):
        product = feed(str(n))
        assert product.category_path == path, n
        assert (product.feed_category_id is not None) == matches, n
        if matches:
            assert (product.category_id, product.category_source) == (product.feed_category_id, CategorySource.FEED)
    assert run.category_report == {
        "matched": 12, "unmatched": 3, "without_path": 1, "mapping": "exact",
        "top_unmatched": [{"path": "Garden > Tools", "products": 2},
                          {"path": "Home Furnishing > Curtains & Accessories > Curtains > Eyelet Curtains",
                           "products": 1}],
    }
    report = import_run_report(import_run=run)
    assert "feed categories (exact): 12 products matched a category, 3 did not, 1 had no path" in report
    assert "      2  Garden > Tools" in report and "/imports/sources/shop/categories/?unmatched=yes" in report


def test_the_report_keeps_the_ten_most_frequent_unmatched_paths(tmp_path, tree):
    records = [{"id": f"{n}-{k}", "title": "t", "category": f"Nowhere > Path {n}"}
               for n in range(12) for k in range(n + 1)]

    run = run_import(tmp_path, records)

    top = run.category_report["top_unmatched"]
    assert [row["path"] for row in top] == [f"Nowhere > Path {n}" for n in range(11, 1, -1)]
    assert top[0]["products"] == 12 and run.category_report["unmatched"] == sum(range(1, 13))


def test_manage_py_import_products_prints_the_category_report(tmp_path, tree):
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps({"id": "1", "title": "a", "category": '["Garden >> Tools"]'}) + "\n")
    out = StringIO()

    call_command("import_products", str(path), "--source", "shop", stdout=out, stderr=StringIO())

    assert "0 products matched a category, 1 did not" in out.getvalue()
    assert "      1  Garden > Tools" in out.getvalue()


def test_the_api_import_detail_carries_the_category_report(tmp_path, tree, api_client, make_user):
    run = run_import(tmp_path, [{"id": "1", "title": "a", "category": "Garden > Tools"}])
    api_client.force_authenticate(make_user("rev", "reviewer"))

    body = api_client.get(f"/api/v1/imports/{run.id}/").json()

    assert body["category_report"]["unmatched"] == 1
    assert body["category_report"]["top_unmatched"] == [{"path": "Garden > Tools", "products": 1}]


def test_an_import_reads_the_sources_map(tmp_path, tree):
    feed_category_map_update(source="shop", mode=FeedCategoryMode.CUT, levels=3, user=None)

    run = run_import(tmp_path, [{"id": "1", "title": "a", "category": "Apparel > Topwear > Tops > Crop Tops > Red"}])

    assert feed("1").feed_category_id == tree["tops"].id
    assert run.category_report["matched"] == 1 and run.category_report["mapping"] == "cut 3"


# ---------------------------------------------------------------------------------------------------------------
# Modes and the table


def resolver(mode: str = FeedCategoryMode.EXACT, levels: int | None = None) -> FeedCategoryResolver:
    FeedCategoryMap.objects.update_or_create(source="shop", defaults={"mode": mode, "levels": levels})
    return FeedCategoryResolver(source="shop")


def test_exact_mode_matches_full_paths_in_any_case_and_taxonomy_ids(tree):
    tree["watches"].external_id = "201"
    tree["watches"].save()
    exact = resolver()

    assert exact.match("apparel > topwear > TOPS") == FeedMatch(tree["tops"].id, How.EXACT)
    assert exact.match("201") == FeedMatch(tree["watches"].id, How.EXACT)
    assert exact.match("Apparel > Topwear > Tops > Crop Tops") == FeedMatch(None, How.UNMATCHED)
    assert exact.match("") == FeedMatch(None, How.UNMATCHED)


def test_cut_mode_cuts_paths_to_n_levels_then_matches_exactly(tree):
    cut = resolver(FeedCategoryMode.CUT, 3)

    assert cut.match("Apparel > Topwear > Tops > Crop Tops > Brand X") == FeedMatch(tree["tops"].id, How.CUT)
    assert cut.match("Apparel > Topwear > Tops") == FeedMatch(tree["tops"].id, How.EXACT)
    assert cut.match("Accessories > Watches") == FeedMatch(tree["watches"].id, How.EXACT)
    assert cut.match("Apparel > Footwear > Shoes > Boots") == FeedMatch(None, How.UNMATCHED)


def test_ancestor_mode_takes_the_deepest_node_that_begins_the_path(tree):
    ancestor = resolver(FeedCategoryMode.ANCESTOR)

    assert ancestor.match("home furnishing > CURTAINS & accessories > Curtains > Eyelet") == FeedMatch(
        tree["curtains"].id, How.ANCESTOR)
    assert ancestor.match("Home Furnishing > Bed Linen > Sheets") == FeedMatch(tree["furnishing"].id, How.ANCESTOR)
    assert ancestor.match("Accessories > Watches") == FeedMatch(tree["watches"].id, How.EXACT)
    assert ancestor.match("Garden > Tools") == FeedMatch(None, How.UNMATCHED)
    # Level by level: a prefix of a name is no ancestor.
    assert ancestor.match("Accessories > Watch") == FeedMatch(category("Accessories").id, How.ANCESTOR)


def test_table_entries_win_over_the_mode_and_may_map_to_none(tree):
    FeedCategoryMapEntry.objects.create(source="shop", feed_path="Garden > Tools", category=tree["watches"])
    FeedCategoryMapEntry.objects.create(source="shop", feed_path="Accessories > Watches", category=None)
    FeedCategoryMapEntry.objects.create(source="other", feed_path="Apparel > Topwear > Tops", category=None)
    table = resolver(FeedCategoryMode.ANCESTOR)

    assert table.match("garden > tools") == FeedMatch(tree["watches"].id, How.TABLE)
    assert table.match("Accessories > Watches") == FeedMatch(None, How.TABLE)
    assert table.match("Apparel > Topwear > Tops") == FeedMatch(tree["tops"].id, How.EXACT)  # another source's


def test_the_resolver_rereads_a_changed_map_and_tree(tree):
    live = resolver()
    assert live.resolve(["Garden > Tools"])["Garden > Tools"].category_id is None

    feed_category_entry_set(source="shop", feed_path="Garden > Tools", category=tree["watches"], user=None)
    garden = category("Garden")
    live.refresh()

    assert live.resolve(["Garden > Tools"])["Garden > Tools"].category_id == tree["watches"].id
    assert live.match("Garden") == FeedMatch(garden.id, How.EXACT)


def test_the_cut_mode_needs_levels(tree):
    with pytest.raises(ValidationError):
        feed_category_map_update(source="shop", mode=FeedCategoryMode.CUT, levels=None, user=None)


# ---------------------------------------------------------------------------------------------------------------
# Re-mapping the products already imported


@pytest.fixture
def changed_events(monkeypatch):
    """Record the product ids of every CATEGORIES_CHANGED event."""
    seen: list[int] = []
    monkeypatch.setitem(events._handlers, events.CATEGORIES_CHANGED, [lambda product_ids: seen.extend(product_ids)])
    return seen


def test_a_mode_change_remaps_existing_products_and_their_effective_categories(
        tmp_path, tree, changed_events, django_capture_on_commit_callbacks, make_user):
    run_import(tmp_path, [
        {"id": "1", "title": "a", "category": "Apparel > Topwear > Tops > Crop Tops"},
        {"id": "2", "title": "b", "category": "Home Furnishing > Curtains & Accessories > Curtains > Eyelet"},
        {"id": "3", "title": "c", "category": "Accessories > Watches"},
        {"id": "4", "title": "d", "category": "Garden > Tools"},
    ])
    label_create(product=feed("2"), category=tree["tops"], user=make_user("lab", "labeller"))
    feed_categories_remap(source="shop")  # nothing to do yet
    assert [feed(n).feed_category_id for n in "1234"] == [None, None, tree["watches"].id, None]

    with django_capture_on_commit_callbacks(execute=True):
        feed_map, result = feed_category_map_update(source="shop", mode=FeedCategoryMode.ANCESTOR, levels=4,
                                                    user=None)

    assert (feed_map.mode, feed_map.levels, feed_map.version) == ("ancestor", None, 1)
    first, second, third, fourth = (feed(n) for n in "1234")
    assert (first.feed_category_id, first.category_id, first.category_source) == (tree["tops"].id, tree["tops"].id,
                                                                                  CategorySource.FEED)
    assert second.feed_category_id == tree["curtains"].id
    assert third.feed_category_id == tree["watches"].id and fourth.feed_category_id is None
    assert (result.products_remapped, result.categories_changed) == (2, 1)  # the labelled one keeps its label
    assert set(changed_events) == {first.id}

    with django_capture_on_commit_callbacks(execute=True):
        feed_category_map_update(source="shop", mode=FeedCategoryMode.CUT, levels=1, user=None)

    roots = [category(name).id for name in ("Apparel", "Home Furnishing", "Accessories")]
    assert [feed(n).feed_category_id for n in "1234"] == [*roots, None]
    assert (feed("3").category_id, feed("3").category_source) == (roots[2], CategorySource.FEED)
    assert feed("3").id in changed_events and feed("2").category_id == tree["tops"].id


def test_a_table_entry_remaps_only_the_products_with_that_path(tmp_path, tree, monkeypatch):
    run_import(tmp_path, [{"id": "1", "title": "a", "category": "Garden > Tools"},
                          {"id": "2", "title": "b", "category": "GARDEN > TOOLS"},
                          {"id": "3", "title": "c", "category": "Accessories > Watches"}])
    monkeypatch.setattr("labelapp.catalogue.services.feed_categories.REMAP_BATCH", 1)  # one product per batch

    entry, result = feed_category_entry_set(source="shop", feed_path="Garden > Tools", category=tree["tops"],
                                            user=None)

    assert entry.category == tree["tops"] and result.products_remapped == 2
    assert [(feed(n).feed_category_id, feed(n).category_id) for n in "12"] == [(tree["tops"].id, tree["tops"].id)] * 2
    assert feed("3").feed_category_id == tree["watches"].id

    again, _ = feed_category_entry_set(source="shop", feed_path="garden > tools", category=None, user=None)
    assert again.pk == entry.pk and FeedCategoryMapEntry.objects.count() == 1
    assert feed("1").feed_category_id is None and feed("1").category_source == CategorySource.NONE

    result = feed_category_entry_delete(source="shop", feed_path="Garden > Tools")
    assert FeedCategoryMapEntry.objects.count() == 0 and result.products_remapped == 0  # exact: still unmatched
    assert FeedCategoryMap.objects.get(source="shop").version == 3


def test_an_entry_needs_a_path(tree):
    with pytest.raises(ValidationError):
        feed_category_entry_set(source="shop", feed_path="  ", category=tree["tops"], user=None)


def test_the_tally_takes_back_a_rolled_back_batch():
    tally = FeedCategoryTally()
    for sign in (1, -1):
        tally.add(path="A", category_id=None, sign=sign)
        tally.add(path="B", category_id=7, sign=sign)
    tally.add(path="", category_id=None)

    assert tally.report(mapping="exact") == {"matched": 0, "unmatched": 0, "without_path": 1, "top_unmatched": [],
                                             "mapping": "exact"}


# ---------------------------------------------------------------------------------------------------------------
# Suggestions


def test_words_fold_case_accents_plurals_and_joined_names():
    assert words("T-Shirts & Polos") == {"tshirt", "polo", "~tshirtpolo"}
    assert words("Accessories") == {"accessory", "~accessory"} and words("Café Glasses") >= {"cafe", "glasse"}
    assert words("Tanktops") & words("Tank Tops") == {"~tanktop"}


def test_name_similarity_suggests_the_node_most_like_the_leaf(tree):
    category("Footwear > Shoes > Sports Shoes", exclusive=True)
    category("Footwear > Shoes > Formal Shoes", exclusive=True)
    index = CategoryNameIndex.build()

    assert index.suggest("Clothing > Women's Clothing > Tshirts").full_path == "Apparel > Topwear > T-shirts"
    assert index.suggest("Men > Footwear > Sport Shoe").full_path == "Footwear > Shoes > Sports Shoes"
    assert index.suggest("Home > Window Curtains").full_path == "Home Furnishing > Curtains & Accessories > Curtains"
    assert index.suggest("Electronics > Mobiles") is None
    assert index.suggest("") is None


def test_label_suggestions_name_the_most_frequent_current_label(tree):
    products = ProductFactory.create_batch(4, source="shop", category_path="Clothing > Tops & Tees")
    for product, node in zip(products, ["tops", "tops", "tshirts"], strict=False):
        LabelFactory(product=product, category=tree[node])
    LabelFactory(product=products[2], category=tree["tops"], undone=True)  # undone: not current
    LabelFactory(product=ProductFactory(source="other", category_path="Clothing > Tops & Tees"), category=tree["jeans"])

    suggestions = feed_path_label_suggestions(source="shop", feed_paths=["Clothing > Tops & Tees", "Nothing"])

    suggestion = suggestions["Clothing > Tops & Tees"]
    assert (suggestion.category_id, suggestion.products, suggestion.labelled) == (tree["tops"].id, 2, 3)
    assert "Nothing" not in suggestions


def test_feed_path_rows_list_paths_by_product_count_with_target_and_suggestions(tree):
    ProductFactory.create_batch(3, source="shop", category_path="Apparel > Topwear > Tops")
    ProductFactory.create_batch(2, source="shop", category_path="Clothing > T-Shirts")
    ProductFactory(source="shop", category_path="")

    rows = feed_path_rows_complete(source="shop", rows=feed_path_rows(source="shop"))
    unmatched = feed_path_rows(source="shop", unmatched_only=True)

    assert [(row.feed_path, row.products, row.target.how) for row in rows] == [
        ("Apparel > Topwear > Tops", 3, How.EXACT), ("Clothing > T-Shirts", 2, How.UNMATCHED)]
    assert rows[0].target_path == "Apparel > Topwear > Tops" and rows[1].by_name.category_id == tree["tshirts"].id
    assert [row.feed_path for row in unmatched] == ["Clothing > T-Shirts"]


# ---------------------------------------------------------------------------------------------------------------
# Real data: MWPD offers, whose breadcrumbs are another taxonomy


@needs_mwpd
def test_mwpd_breadcrumbs_are_reported_unmatched_until_a_table_entry_maps_them(tmp_path):
    offers = [json.loads(line) for line in (MWPD / "validation.json").read_text().splitlines() if line.strip()]
    gs1 = {}
    for offer in offers:  # the product's own taxonomy: GS1 "<code>_<name>" at three levels
        path = " > ".join(offer[level].split("_", 1)[1] for level in ("lvl1", "lvl2", "lvl3"))
        gs1[offer["ID"]] = path
    for path in set(gs1.values()):
        category(path)
    mapping = {"fields": {"external_id": "ID", "title": "Name", "description": "Description"},
               "category": {"path": "CategoryText"}}
    feed_file = tmp_path / "mwpd.jsonl"
    feed_file.write_text((MWPD / "validation.json").read_text())
    run = import_run_create(kind=ImportKind.PRODUCTS, file_name=str(feed_file), source="mwpd")
    run = products_import(import_run=run, path=feed_file, mapping=ImportMapping.from_dict(mapping))

    report = run.category_report
    assert run.rows_created == len(offers)
    assert report["unmatched"] > len(offers) / 2 and report["matched"] < len(offers) / 100
    top = {row["path"]: row["products"] for row in report["top_unmatched"]}
    assert len(top) == 10 and top["T-Shirts"] == max(top.values())

    tshirts = Product.objects.filter(source="mwpd", category_path="T-Shirts")
    gs1_node = category(max(gs1.values(), key=[gs1[p.external_id] for p in tshirts].count))
    _, result = feed_category_entry_set(source="mwpd", feed_path="T-Shirts", category=gs1_node, user=None)

    assert result.products_remapped == tshirts.count() == top["T-Shirts"]
    assert set(tshirts.values_list("feed_category_id", "category_id")) == {(gs1_node.id, gs1_node.id)}
