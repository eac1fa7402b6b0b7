"""The REST API: permissions per role, filters, errors as 4xx, labels, health."""
import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from config.celery import app
from labelapp.catalogue.models import CategorySource, Label, LabelStrategy, RuleLabel
from labelapp.common.apis import exception_handler
from labelapp.common.roles import API_CLIENT, LABELLER, REVIEWER
from tests.factories import LegacyRuleFactory, ProductFactory, category

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue():
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    jeans = category("Apparel > Bottomwear > Jeans", exclusive=True)
    watches = category("Accessories > Watches > Watches", exclusive=True)
    products = {
        "shirt": ProductFactory(title="Blue Oxford Shirt", category=shirts, level2=shirts.level2, source="feed-a"),
        "jeans": ProductFactory(title="Slim Jeans", category=jeans, level2=jeans.level2, source="feed-a"),
        "watch": ProductFactory(title="Steel Watch", category=watches, level2=watches.level2, source="feed-b"),
    }
    return {"Shirts": shirts, "Jeans": jeans, "Watches": watches, **products}


def _token_client(api_client, user):
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api_client


@pytest.mark.parametrize("path", ["/api/v1/products/", "/api/v1/categories/", "/api/v1/labels/",
                                  "/api/v1/rule-labels/", "/api/v1/rules/", "/api/v1/categories/tree/"])
def test_anonymous_requests_are_refused(api_client, path):
    response = api_client.get(path)

    assert response.status_code == 401
    assert "credentials" in response.json()["detail"].lower()


@pytest.mark.parametrize("role, path, expected", [
    (API_CLIENT, "/api/v1/products/", 200),
    (API_CLIENT, "/api/v1/categories/", 200),
    (API_CLIENT, "/api/v1/labels/", 403),
    (API_CLIENT, "/api/v1/rules/", 403),
    (LABELLER, "/api/v1/labels/", 200),
    (LABELLER, "/api/v1/rules/", 403),
    (REVIEWER, "/api/v1/rules/", 200),
    (REVIEWER, "/api/v1/labels/", 200),
])
def test_each_role_reaches_only_its_endpoints(api_client, make_user, role, path, expected):
    client = _token_client(api_client, make_user("someone", role))

    assert client.get(path).status_code == expected


def test_user_without_role_is_forbidden_with_a_message(api_client, make_user):
    client = _token_client(api_client, make_user("nobody"))

    response = client.get("/api/v1/products/")

    assert response.status_code == 403
    assert "roles" in response.json()["detail"]


def test_product_list_filters_by_category_subtree_and_source(api_client, make_user, catalogue):
    client = _token_client(api_client, make_user("shop", API_CLIENT))
    apparel_id = catalogue["Shirts"].lineage[0]

    in_apparel = client.get("/api/v1/products/", {"category": apparel_id}).json()["results"]
    from_feed_b = client.get("/api/v1/products/", {"source": "feed-b"}).json()["results"]

    assert {p["title"] for p in in_apparel} == {"Blue Oxford Shirt", "Slim Jeans"}
    assert [p["title"] for p in from_feed_b] == ["Steel Watch"]
    assert from_feed_b[0]["category"]["full_path"] == "Accessories > Watches > Watches"


def test_product_list_filters_labelled(api_client, make_user, catalogue):
    labeller = make_user("lab", LABELLER)
    Label.objects.create(product=catalogue["jeans"], category=catalogue["jeans"].category, labeller=labeller)
    client = _token_client(api_client, labeller)

    labelled = client.get("/api/v1/products/", {"labelled": "true"}).json()["results"]
    unlabelled = client.get("/api/v1/products/", {"labelled": "false"}).json()["results"]

    assert [p["title"] for p in labelled] == ["Slim Jeans"]
    assert labelled[0]["is_labelled"] is True
    assert {p["title"] for p in unlabelled} == {"Blue Oxford Shirt", "Steel Watch"}


def test_product_list_rejects_bad_filters_with_400(api_client, make_user, catalogue):
    client = _token_client(api_client, make_user("shop", API_CLIENT))

    assert client.get("/api/v1/products/", {"category": "abc"}).status_code == 400
    unknown = client.get("/api/v1/products/", {"category": 999999})
    assert unknown.status_code == 400
    assert "no category" in str(unknown.json()["category"])
    assert client.get("/api/v1/products/", {"split": "train"}).status_code == 400


def test_product_list_pages_with_a_cursor(api_client, make_user):
    ProductFactory.create_batch(7)
    client = _token_client(api_client, make_user("shop", API_CLIENT))

    first = client.get("/api/v1/products/", {"page_size": 5}).json()
    second = client.get(first["next"]).json()

    assert len(first["results"]) == 5 and len(second["results"]) == 2
    assert second["next"] is None
    assert not {p["id"] for p in first["results"]} & {p["id"] for p in second["results"]}


def test_product_detail_shows_raw_record_rule_trace_and_label_history(api_client, make_user, catalogue):
    reviewer = make_user("rev", REVIEWER)
    shirt = catalogue["shirt"]
    rule = LegacyRuleFactory(name="shirts-by-title", category=catalogue["Shirts"])
    RuleLabel.objects.create(product=shirt, category=catalogue["Shirts"], rule=rule)
    Label.objects.create(product=shirt, category=catalogue["Jeans"], labeller=reviewer)
    Label.objects.create(product=shirt, category=catalogue["Shirts"], labeller=reviewer)
    client = _token_client(api_client, reviewer)

    body = client.get(f"/api/v1/products/{shirt.id}/").json()

    assert body["raw"] == shirt.raw
    assert body["rule_labels"] == [{"category": body["rule_labels"][0]["category"], "rule_id": rule.id,
                                    "rule_name": "shirts-by-title"}]
    assert [label["category"]["name"] for label in body["labels"]] == ["Shirts", "Jeans"]


def test_unknown_product_is_404_not_500(api_client, make_user):
    client = _token_client(api_client, make_user("shop", API_CLIENT))

    response = client.get("/api/v1/products/987654/")

    assert response.status_code == 404
    assert response.json()["detail"]


def test_an_api_path_no_route_matches_is_a_json_404(api_client, make_user):
    client = _token_client(api_client, make_user("shop", API_CLIENT))

    response = client.get("/api/v1/products/not-a-number/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}
    assert client.get("/no-such-page/")["Content-Type"].startswith("text/html")


def test_category_tree_nests_children(api_client, make_user, catalogue):
    client = _token_client(api_client, make_user("shop", API_CLIENT))

    tree = client.get("/api/v1/categories/tree/").json()["tree"]

    apparel = next(node for node in tree if node["name"] == "Apparel")
    assert sorted(child["name"] for child in apparel["children"]) == ["Bottomwear", "Topwear"]
    assert apparel["children"][0]["children"][0]["is_exclusive"] is True


def test_category_list_filters_exclusive(api_client, make_user, catalogue):
    client = _token_client(api_client, make_user("shop", API_CLIENT))

    names = [c["name"] for c in client.get("/api/v1/categories/", {"exclusive": "true"}).json()["results"]]

    assert sorted(names) == ["Jeans", "Shirts", "Watches"]


def test_labeller_posts_a_label_which_becomes_the_effective_category(api_client, make_user, catalogue):
    client = _token_client(api_client, make_user("lab", LABELLER))
    shirt = catalogue["shirt"]

    response = client.post("/api/v1/labels/", {"product": shirt.id, "category": catalogue["Jeans"].id},
                           format="json")

    assert response.status_code == 201, response.content
    shirt.refresh_from_db()
    assert shirt.category_id == catalogue["Jeans"].id
    assert shirt.category_source == CategorySource.LABEL
    assert shirt.level2_id == catalogue["Jeans"].level2_id
    # Made outside a labelling round's queue: the server records it as manual.
    assert Label.objects.get().strategy == LabelStrategy.MANUAL
    assert response.json()["strategy"] == LabelStrategy.MANUAL


@pytest.mark.parametrize("strategy", ["random", "manual", "import"])
def test_a_client_cannot_choose_a_labels_strategy(api_client, make_user, catalogue, strategy):
    client = _token_client(api_client, make_user("lab", LABELLER))

    response = client.post("/api/v1/labels/", {"product": catalogue["shirt"].id, "category": catalogue["Jeans"].id,
                                               "strategy": strategy}, format="json")

    # A labeller choosing "random" would slip biased labels into the unbiased random slice that measures trust.
    assert response.status_code == 400
    assert "set by the server" in str(response.json()["strategy"])
    assert Label.objects.count() == 0


def test_label_for_a_non_exclusive_category_is_400(api_client, make_user, catalogue):
    client = _token_client(api_client, make_user("lab", LABELLER))
    topwear_id = catalogue["Shirts"].parent_id

    response = client.post("/api/v1/labels/", {"product": catalogue["shirt"].id, "category": topwear_id},
                           format="json")

    assert response.status_code == 400
    assert "exclusive" in str(response.json())
    assert Label.objects.count() == 0


def test_reviewer_cannot_post_labels(api_client, make_user, catalogue):
    client = _token_client(api_client, make_user("rev", REVIEWER))

    response = client.post("/api/v1/labels/", {"product": catalogue["shirt"].id, "category": None}, format="json")

    assert response.status_code == 403


def test_current_labels_keep_only_the_newest_per_product(api_client, make_user, catalogue):
    reviewer = make_user("rev", REVIEWER)
    Label.objects.create(product=catalogue["shirt"], category=catalogue["Jeans"], labeller=reviewer)
    Label.objects.create(product=catalogue["shirt"], category=catalogue["Shirts"], labeller=reviewer)
    client = _token_client(api_client, reviewer)

    every = client.get("/api/v1/labels/").json()["results"]
    current = client.get("/api/v1/labels/", {"current": "true"}).json()["results"]

    assert len(every) == 2
    assert [row["category"]["name"] for row in current] == ["Shirts"]


def test_health_reports_database_and_broker(api_client):
    response = api_client.get("/api/v1/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.fixture
def broker_down(settings):
    # The health check opens a fresh connection from the configured URL (not the app's shared pool).
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    yield
    app.conf.broker_url = settings.CELERY_BROKER_URL


def test_health_is_503_and_tells_anonymous_callers_no_more_than_what_is_down(api_client, broker_down):
    response = api_client.get("/api/v1/health/")

    assert response.status_code == 503
    # Not the error text: it names the broker's host and port.
    assert response.json() == {"status": "degraded", "database": "ok", "broker": "error"}


@pytest.mark.parametrize("roles, staff, detailed", [((REVIEWER,), False, True), ((), True, True),
                                                    ((LABELLER,), False, False), ((API_CLIENT,), False, False)])
def test_health_shows_the_error_detail_to_reviewers_and_staff_only(api_client, make_user, broker_down,
                                                                   roles, staff, detailed):
    client = _token_client(api_client, make_user("someone", *roles, staff=staff))

    body = client.get("/api/v1/health/").json()

    assert (body["status"], body["database"], body["broker"]) == ("degraded", "ok", "error")
    if detailed:
        assert body["errors"]["database"] == ""
        assert "127.0.0.1:1" in body["errors"]["broker"]
    else:
        assert "errors" not in body


def test_health_reports_a_database_outage_to_token_callers_instead_of_failing(api_client, make_user, monkeypatch):
    client = _token_client(api_client, make_user("rev", REVIEWER))
    monkeypatch.setattr("labelapp.common.apis.database_ping", lambda: "OperationalError: server closed the connection")

    def token_lookup_fails(self, key):
        raise OperationalError("server closed the connection")

    monkeypatch.setattr(TokenAuthentication, "authenticate_credentials", token_lookup_fails)

    response = client.get("/api/v1/health/")

    # Who asks cannot be read with the database away: the answer is the anonymous one, never a 500.
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "database": "error", "broker": "ok"}


def test_a_validation_error_about_no_one_field_answers_an_object():
    response = exception_handler(DjangoValidationError("Round 3 is still open."), {})

    assert (response.status_code, response.data) == (400, {"non_field_errors": ["Round 3 is still open."]})


def test_health_answers_anonymous_callers_with_a_session_less_client(client):
    response = client.get("/api/v1/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_openapi_schema_and_docs_page_are_served_to_logged_in_users(api_client, client, make_user):
    client.force_login(make_user("lab", LABELLER))
    token_client = _token_client(api_client, make_user("shop", API_CLIENT))

    schema = client.get("/api/v1/schema/")
    docs = client.get("/api/v1/docs/")
    by_token = token_client.get("/api/v1/schema/")

    assert schema.status_code == 200 and b"/api/v1/products/" in schema.content
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    assert by_token.status_code == 200 and b"/api/v1/products/" in by_token.content


def test_openapi_schema_and_docs_page_refuse_anonymous_callers(api_client, client):
    schema = api_client.get("/api/v1/schema/")
    docs = client.get("/api/v1/docs/")

    assert schema.status_code == 401
    assert b"/api/v1/products/" not in schema.content
    assert docs.status_code == 302
    assert docs["Location"].startswith("/accounts/login/?next=/api/v1/docs/")
