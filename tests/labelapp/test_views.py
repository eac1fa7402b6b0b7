"""HTML pages: login, roles, htmx partials."""
import pytest

from labelapp.catalogue.models import ImportRowIssue, ImportRun, RowOutcome
from labelapp.common.roles import API_CLIENT, LABELLER, REVIEWER
from tests.factories import ProductFactory, category

pytestmark = pytest.mark.django_db


def test_pages_redirect_anonymous_users_to_login(client):
    response = client.get("/products/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_login_page_renders_and_logs_in(client, make_user):
    make_user("lab", LABELLER)

    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "lab", "password": "pw-for-tests-123"})

    assert response.status_code == 302 and response["Location"] == "/"


def test_product_list_is_a_full_page_or_an_htmx_partial(client, make_user):
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    ProductFactory(title="Linen Shirt", category=shirts)
    ProductFactory(title="Wool Scarf")
    client.force_login(make_user("lab", LABELLER))

    page = client.get("/products/", {"q": "linen"})
    partial = client.get("/products/", {"q": "linen"}, HTTP_HX_REQUEST="true")

    assert b"<html" in page.content and b"Linen Shirt" in page.content and b"Wool Scarf" not in page.content
    assert b"<html" not in partial.content and b"Linen Shirt" in partial.content


def test_product_list_filters_by_category_subtree(client, make_user):
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    scarves = category("Accessories > Scarves > Scarves", exclusive=True)
    ProductFactory(title="Linen Shirt", category=shirts)
    ProductFactory(title="Wool Scarf", category=scarves)
    client.force_login(make_user("rev", REVIEWER))

    response = client.get("/products/", {"category": shirts.lineage[0]})

    assert b"Linen Shirt" in response.content and b"Wool Scarf" not in response.content
    assert b"in Apparel" in response.content


def test_api_clients_cannot_browse_the_staff_pages(client, make_user):
    client.force_login(make_user("shop", API_CLIENT))

    assert client.get("/products/").status_code == 403
    assert client.get("/imports/").status_code == 403


def test_product_detail_page_and_missing_product(client, make_user):
    product = ProductFactory(title="Linen Shirt", raw={"id": "x1", "name": "Linen <b>Shirt</b>"})
    client.force_login(make_user("lab", LABELLER))

    page = client.get(f"/products/{product.id}/")
    missing = client.get("/products/999999/")

    assert page.status_code == 200 and b"Linen Shirt" in page.content and b"Raw record" in page.content
    assert missing.status_code == 404


def test_category_tree_loads_children_with_htmx(client, make_user):
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    client.force_login(make_user("lab", LABELLER))

    roots = client.get("/categories/")
    children = client.get("/categories/", {"parent": shirts.lineage[0]}, HTTP_HX_REQUEST="true")

    assert b"Apparel" in roots.content and b"Topwear" not in roots.content
    assert b"Topwear" in children.content and b"<html" not in children.content


def test_import_report_lists_row_issues_for_reviewers(client, make_user):
    run = ImportRun.objects.create(kind="products", file_name="feed.csv", rows_total=3, rows_rejected=1)
    ImportRowIssue.objects.create(import_run=run, line=7, outcome=RowOutcome.REJECTED, reason="missing title",
                                  raw="7,,,")
    client.force_login(make_user("rev", REVIEWER))

    page = client.get(f"/imports/{run.id}/", {"outcome": "rejected"})

    assert page.status_code == 200 and b"missing title" in page.content and b"feed.csv" in page.content


def test_product_detail_page_shows_the_active_model_prediction(client, make_user):
    from tests.factories import ModelVersionFactory, PredictionFactory

    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    tees = category("Apparel > Topwear > Tshirts", exclusive=True)
    product = ProductFactory(title="Linen Shirt")
    client.force_login(make_user("lab", LABELLER))
    assert b"No trained model has predicted this product yet" in client.get(f"/products/{product.id}/").content

    old = ModelVersionFactory(name="clf-old")
    PredictionFactory(model_version=old, product=product, category=tees, top_k=[[tees.id, 0.9]])
    active = ModelVersionFactory(name="clf-active", is_active=True)
    PredictionFactory(model_version=active, product=product, category=shirts, confidence=0.82, margin=0.7,
                      entropy=0.4, top_k=[[shirts.id, 0.82], [tees.id, 0.12]])

    page = client.get(f"/products/{product.id}/").content.decode()

    assert "clf-active" in page and "clf-old" not in page
    assert page.index("Apparel &gt; Topwear &gt; Shirts") < page.index("Apparel &gt; Topwear &gt; Tshirts")
    assert "82 %" in page and "12 %" in page
