"""The labelling page over HTTP: cards, preloading, submit / skip / undo through htmx, the category list."""
from __future__ import annotations

import re

import pytest

from labelapp.catalogue.models import Label, RuleLabel, SourceTrust, TrustKind
from labelapp.common.roles import LABELLER, REVIEWER
from labelapp.workflow.models import QueueItem, QueueItemStatus
from tests.factories import (
    LegacyRuleFactory,
    ModelVersionFactory,
    PredictionFactory,
    category,
    labelling_round_with_items,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _items_on(html: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb'class="label-card" data-item="(\d+)"', html)]


@pytest.fixture
def shirts():
    return category("Apparel > Topwear > Shirts", exclusive=True)


@pytest.fixture
def labeller(client, make_user):
    user = make_user("lab", LABELLER)
    client.force_login(user)
    return user


def test_the_page_shows_the_product_and_preloads_the_next(client, labeller, shirts):
    rule = LegacyRuleFactory(category=shirts)
    round, items = labelling_round_with_items(3, title="Linen Summer Shirt", category_path="Men > Shirts",
                                              brand="Acme")
    RuleLabel.objects.create(product=items[0].product, category=shirts, rule=rule)

    response = client.get("/label/")

    html = response.content
    assert response.status_code == 200 and b"<html" in html
    assert _items_on(html) == [items[0].pk, items[1].pk]
    current = html.split(b'id="preload"')[0]
    assert b"Linen Summer Shirt" in current and b"Men &gt; Shirts" in current and b"Acme" in current
    assert b"Apparel &gt; Topwear &gt; Shirts" in current  # the rule label
    assert b"Round " + str(round.number).encode() in html and b"0</span> of 3 labelled" in html
    # A cold start has no model: the rule's category is offered on key 1, marked with its source.
    assert re.findall(rb'value="(\d+)" data-key="(\d)"', current) == [(str(shirts.pk).encode(), b"1")]
    assert b'class="source source-rule"' in current and b"not measured" in current
    assert b"No model suggestions yet, and no rule or feed" in html.split(b'id="preload"')[1]  # the next card: nothing at all


def test_rules_feed_and_model_suggestions_merge_with_their_estimates(client, labeller, shirts):
    jeans = category("Apparel > Bottomwear > Jeans", exclusive=True)
    version = ModelVersionFactory()
    round, items = labelling_round_with_items(1, round_kwargs={"model_version": version})
    product = items[0].product
    product.feed_category = jeans
    product.save(update_fields=["feed_category"])
    rule = LegacyRuleFactory(category=shirts)
    RuleLabel.objects.create(product=product, category=shirts, rule=rule)
    SourceTrust.objects.create(kind=TrustKind.RULE, rule=rule, precision=0.9, labelled=40, correct=36)
    SourceTrust.objects.create(kind=TrustKind.FEED_SOURCE, source=product.source, precision=0.3)
    PredictionFactory(model_version=version, product=product, category=jeans, top_k=[[jeans.pk, 0.6]])

    html = client.get("/label/").content.decode()

    keys = re.findall(r'value="(\d+)" data-key="(\d)"', html)
    assert keys == [(str(shirts.pk), "1"), (str(jeans.pk), "2")]  # the rule's 90 % before the model's 60 %
    jeans_line = html.split(f'value="{jeans.pk}"')[1].split("</li>")[0]
    assert "model 60 %" in jeans_line and "feed 30 %" in jeans_line  # one key, both sources named


def test_a_reload_shows_the_same_products(client, labeller):
    labelling_round_with_items(4)

    assert _items_on(client.get("/label/").content) == _items_on(client.get("/label/").content)


def test_the_models_top_five_are_offered_on_keys_one_to_five(client, labeller):
    version = ModelVersionFactory()
    round, items = labelling_round_with_items(1, round_kwargs={"model_version": version})
    leaves = [category(f"Apparel > Topwear > Leaf {n}", exclusive=True) for n in range(6)]
    PredictionFactory(model_version=version, product=items[0].product, category=leaves[0],
                      top_k=[[leaf.pk, 0.5 - 0.05 * n] for n, leaf in enumerate(leaves)])

    html = client.get("/label/").content.decode()

    keys = re.findall(r'value="(\d+)" data-key="(\d)"', html)
    assert keys == [(str(leaf.pk), str(n + 1)) for n, leaf in enumerate(leaves[:5])]
    assert "Leaf 5" not in html and "50 %" in html


def test_submit_records_the_label_and_answers_with_the_card_to_preload(client, labeller, shirts):
    round, items = labelling_round_with_items(4)
    client.get("/label/")  # holds items 0 (on screen) and 1 (preloaded)

    response = client.post(f"/label/items/{items[0].pk}/submit/",
                           {"category": shirts.pk, "time_spent_ms": 2300, "token": f"{items[0].pk}.0",
                            "showing": items[1].pk}, **HTMX)

    assert response.status_code == 200 and b"<html" not in response.content
    assert _items_on(response.content) == [items[2].pk]  # the browser already shows item 1
    assert b'id="labelling-progress" class="labelling-progress" hx-swap-oob="true"' in response.content
    assert b"1</span> of 4 labelled" in response.content
    label = Label.objects.get()
    assert (label.category, label.labeller, label.context.time_spent_ms, label.context.round) == (
        shirts, labeller, 2300, round)


def test_a_double_submit_writes_one_label(client, labeller, shirts):
    round, items = labelling_round_with_items(3)
    client.get("/label/")
    payload = {"category": shirts.pk, "time_spent_ms": 10, "token": f"{items[0].pk}.0", "showing": items[1].pk}

    first = client.post(f"/label/items/{items[0].pk}/submit/", payload, **HTMX)
    second = client.post(f"/label/items/{items[0].pk}/submit/", payload, **HTMX)

    assert first.status_code == second.status_code == 200
    assert Label.objects.count() == 1 and b"warning" not in second.content


def test_none_fits_and_a_flag_with_a_note(client, labeller):
    round, items = labelling_round_with_items(2)
    client.get("/label/")

    client.post(f"/label/items/{items[0].pk}/submit/",
                {"category": "none", "flagged": "on", "note": "two products in one photo"}, **HTMX)

    label = Label.objects.get()
    item = QueueItem.objects.get(pk=items[0].pk)
    assert (label.category, label.note, item.flagged) == (None, "two products in one photo", True)


def test_a_submit_without_a_valid_category_says_what_to_do(client, labeller, make_user):
    round, items = labelling_round_with_items(2)
    broad = category("Apparel", exclusive=False)
    client.get("/label/")

    missing = client.post(f"/label/items/{items[0].pk}/submit/", {"showing": items[1].pk}, **HTMX)
    not_exclusive = client.post(f"/label/items/{items[0].pk}/submit/", {"category": broad.pk}, **HTMX)

    assert "Pick a category, or “none fits”." in missing.content.decode()
    assert "Pick one of the exclusive categories." in not_exclusive.content.decode()
    assert not Label.objects.exists()


def test_submitting_a_product_someone_else_took_explains_it(client, labeller, make_user, shirts):
    round, items = labelling_round_with_items(2)
    QueueItem.objects.filter(pk=items[0].pk).update(status=QueueItemStatus.LEASED, leased_to=make_user("other"),
                                                    lease_expires_at="2999-01-01T00:00:00Z")

    response = client.post(f"/label/items/{items[0].pk}/submit/", {"category": shirts.pk}, **HTMX)

    assert "Another labeller holds this product now" in response.content.decode()
    assert not Label.objects.exists()


def test_submitting_a_product_another_labeller_skipped_needs_a_lease_first(client, labeller, make_user, shirts):
    round, items = labelling_round_with_items(3)
    QueueItem.objects.filter(pk=items[0].pk).update(skipped_by=[make_user("other").pk])  # pending, held by nobody

    response = client.post(f"/label/items/{items[0].pk}/submit/", {"category": shirts.pk}, **HTMX)

    assert "You do not hold this product" in response.content.decode()
    assert not Label.objects.exists()
    # The answer hands the product over the ordinary way: leased now, it can be labelled.
    assert _items_on(response.content)[0] == items[0].pk
    assert QueueItem.objects.get(pk=items[0].pk).leased_to == labeller


def test_skip_gives_the_product_to_others_and_preloads_the_next(client, labeller):
    round, items = labelling_round_with_items(4)
    client.get("/label/")

    response = client.post(f"/label/items/{items[0].pk}/skip/", {"showing": items[1].pk}, **HTMX)

    assert _items_on(response.content) == [items[2].pk]
    item = QueueItem.objects.get(pk=items[0].pk)
    assert (item.status, item.skipped_by) == (QueueItemStatus.PENDING, [labeller.pk])


def test_undo_puts_the_last_product_back_on_screen(client, labeller, shirts):
    round, items = labelling_round_with_items(4)
    client.get("/label/")
    client.post(f"/label/items/{items[0].pk}/submit/", {"category": shirts.pk, "showing": items[1].pk}, **HTMX)

    response = client.post("/label/undo/", **HTMX)

    assert _items_on(response.content)[:2] == [items[0].pk, items[1].pk]
    assert f'value="{items[0].pk}.{Label.objects.get().pk}"'.encode() in response.content  # the new token
    assert Label.objects.get().undone
    assert b"0</span> of 4 labelled" in response.content


def test_undo_with_nothing_to_undo_says_so(client, labeller):
    labelling_round_with_items(1)

    response = client.post("/label/undo/", **HTMX)

    assert "Nothing to undo" in response.content.decode()


def test_without_javascript_a_submit_redirects_back_to_the_page(client, labeller, shirts):
    round, items = labelling_round_with_items(2)
    client.get("/label/")

    response = client.post(f"/label/items/{items[0].pk}/submit/", {"category": shirts.pk})

    assert response.status_code == 302 and response["Location"] == "/label/"
    assert Label.objects.count() == 1


def test_the_end_of_the_queue_and_no_open_round_are_explained(client, labeller, shirts):
    assert "No labelling round is open" in client.get("/label/").content.decode()
    round, items = labelling_round_with_items(1)
    client.get("/label/")

    response = client.post(f"/label/items/{items[0].pk}/submit/", {"category": shirts.pk, "showing": ""}, **HTMX)

    assert "Nothing left for you in round" in response.content.decode()


def test_the_category_list_is_every_exclusive_path_once(client, labeller, shirts):
    category("Apparel > Topwear", exclusive=False)
    jeans = category("Apparel > Bottomwear > Jeans", exclusive=True)

    data = client.get("/label/categories.json").json()

    assert data == {"categories": [[jeans.pk, jeans.full_path], [shirts.pk, shirts.full_path]]}


def test_only_labellers_label(client, make_user):
    client.force_login(make_user("rev", REVIEWER))

    assert client.get("/label/").status_code == 403
    assert client.post("/label/undo/").status_code == 403


def test_a_submit_serves_in_a_bounded_number_of_queries(client, labeller, shirts, django_assert_max_num_queries):
    round, items = labelling_round_with_items(4)
    client.get("/label/")

    with django_assert_max_num_queries(30):
        client.post(f"/label/items/{items[0].pk}/submit/", {"category": shirts.pk, "showing": items[1].pk}, **HTMX)
    with django_assert_max_num_queries(16):
        client.get("/label/", **HTMX)
