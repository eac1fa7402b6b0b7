"""GET /api/v1/products/{external_id}/similar/: auth, roles, throttling, 4xx for every bad input, caching."""
from __future__ import annotations

import numpy as np
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.throttling import ScopedRateThrottle

from labelapp.common.roles import API_CLIENT, LABELLER, REVIEWER
from similarity.models import EmbeddingFailure, EmbeddingJob, EmbeddingKind, ImageEmbedding
from similarity.services.embeddings import image_embeddings_write
from similarity.services.spaces import embedding_space_ensure
from tests.factories import ProductFactory, category

pytestmark = pytest.mark.django_db

VERSION = "efficientnet_lite0-57934424"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Users are made per test: PBKDF2's deliberate slowness would dominate these tests' time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def unit_vectors(n: int, *, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, 1280)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def catalogue():
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    tees = category("Apparel > Topwear > Tshirts", exclusive=True)
    watches = category("Accessories > Watches > Watches", exclusive=True)
    leaves = [shirts] * 12 + [tees] * 12 + [watches] * 12
    products = [ProductFactory(external_id=f"sku-{i}", title=f"Item {i}", category=leaf, level2=leaf.level2,
                               level3=leaf.level3, image=f"products/test/sku-{i}.jpg", category_source="feed")
                for i, leaf in enumerate(leaves)]
    embedding_space_ensure(model_version=VERSION, kind=EmbeddingKind.IMAGE, dim=1280)
    ImageEmbedding.objects.bulk_create([
        ImageEmbedding(product=p, model_version=VERSION, embedding=v, fingerprint="t", level2_id=p.level2_id,
                       level3_id=p.level3_id) for p, v in zip(products, unit_vectors(len(products), seed=3))
    ])
    return {"products": products, "shirts": shirts, "watches": watches}


@pytest.fixture
def shopper(api_client, make_user):
    token = Token.objects.create(user=make_user("shop", API_CLIENT))
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api_client


def similar(client, external_id="sku-0", **params):
    return client.get(f"/api/v1/products/{external_id}/similar/", params)


def test_neighbours_with_ids_titles_absolute_image_urls_categories_and_scores(shopper, catalogue):
    response = similar(shopper, k=5, scope="level3")

    assert response.status_code == 200
    body = response.json()
    assert body["query"]["external_id"] == "sku-0"
    assert (body["k"], body["scope"], body["modality"], body["count"]) == (5, "level3", "image", 5)
    assert body["model_version"] == VERSION
    first = body["neighbours"][0]
    assert set(first) >= {"id", "source", "external_id", "title", "image_url", "category", "score", "rank"}
    assert first["image_url"].startswith("http://testserver/media/products/test/sku-")
    assert first["category"] == {"id": catalogue["shirts"].id, "full_path": "Apparel > Topwear > Shirts",
                                 "source": "feed"}
    scores = [n["score"] for n in body["neighbours"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert body["meta"]["strategy"] == "exact" and body["meta"]["cached"] is False


def test_scopes_filter_by_the_effective_category(shopper, catalogue):
    level2 = similar(shopper, k=30, scope="level2").json()["neighbours"]
    whole = similar(shopper, k=40, scope="global").json()["neighbours"]

    assert len(level2) == 23 and {n["category"]["full_path"].split(" > ")[1] for n in level2} == {"Topwear"}
    assert len(whole) == 35


def test_anonymous_requests_get_401(api_client, catalogue):
    assert similar(api_client).status_code == 401


@pytest.mark.parametrize("roles, staff, expected", [
    ((LABELLER,), False, 403), ((), False, 403), ((API_CLIENT,), False, 200), ((REVIEWER,), False, 200),
    ((), True, 200),
])
def test_only_api_clients_reviewers_and_staff_may_ask(api_client, make_user, catalogue, roles, staff, expected):
    user = make_user("someone", *roles, staff=staff)
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    response = similar(api_client)

    assert response.status_code == expected
    if expected == 403:
        assert "api-client" in response.json()["detail"]


def test_requests_past_the_rate_are_throttled(shopper, catalogue, monkeypatch):
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "similar", "3/min")

    codes = [similar(shopper).status_code for _ in range(4)]

    assert codes == [200, 200, 200, 429]


@pytest.mark.parametrize("params, field, message", [
    ({"k": 0}, "k", "k must be from 1 to 200."),
    ({"k": 201}, "k", "k must be from 1 to 200."),
    ({"k": "ten"}, "k", "k must be an integer from 1 to 200."),
    ({"k": "1e3"}, "k", "k must be an integer from 1 to 200."),
    ({"scope": "level9"}, "scope", "scope must be one of level2, level3, global."),
    ({"modality": "audio"}, "modality", "modality must be one of image, text, hybrid."),
    ({"text_weight": 1.5}, "text_weight", "text_weight must be from 0 to 1."),
    ({"text_weight": "nan"}, "text_weight", None),
    ({"source": "a\x00b"}, "source", None),
])
def test_bad_parameters_are_400_with_a_message(shopper, catalogue, params, field, message):
    response = similar(shopper, **params)

    assert response.status_code == 400
    assert field in response.json()
    if message:
        assert response.json()[field] == [message]


def test_blank_parameters_take_their_defaults(shopper, catalogue):
    body = similar(shopper, k="", scope="", modality="").json()

    assert (body["k"], body["scope"], body["modality"]) == (20, "level2", "image")


@pytest.mark.parametrize("external_id", ["no-such-sku", "a" * 300, "%00", "sku-0%2Fx", "ünïcödé"])
def test_unknown_products_are_404(shopper, catalogue, external_id):
    response = similar(shopper, external_id)

    assert response.status_code == 404
    assert "detail" in response.json()


def test_an_external_id_in_several_sources_needs_a_source(shopper, catalogue):
    ProductFactory(external_id="sku-0", source="other-feed")

    ambiguous = similar(shopper)
    chosen = similar(shopper, source="test", k=3)
    unknown_source = similar(shopper, source="nowhere")

    assert ambiguous.status_code == 400
    assert ambiguous.json()["code"] == "external_id_ambiguous"
    assert ambiguous.json()["sources"] == ["other-feed", "test"]
    assert "source=" in ambiguous.json()["detail"]
    assert chosen.status_code == 200 and chosen.json()["query"]["source"] == "test"
    assert unknown_source.status_code == 404


def test_a_product_without_an_image_embedding_is_409_suggesting_text(shopper, catalogue):
    shirts = catalogue["shirts"]
    no_photo = ProductFactory(external_id="bare", image="", category=shirts, level2=shirts.level2,
                              level3=shirts.level3)
    broken = ProductFactory(external_id="broken", image="products/x.jpg", category=shirts, level2=shirts.level2,
                            level3=shirts.level3)
    EmbeddingFailure.objects.create(product=broken, model_version=VERSION, reason="truncated: image file is cut")

    for external_id, why in (("bare", "it has no image"), ("broken", "truncated: image file is cut")):
        response = similar(shopper, external_id)
        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "embedding_missing"
        assert why in body["detail"] and "modality=text" in body["detail"]
    text = similar(shopper, "bare", modality="text")
    assert text.status_code == 409 and "No text model has been built yet" in text.json()["detail"]


def test_a_scope_the_product_has_no_category_for_is_422(shopper, catalogue):
    top = category("Clearance", exclusive=True)
    ProductFactory(external_id="loose", category=top, level2=None, level3=None)

    response = similar(shopper, "loose", scope="level2")

    assert response.status_code == 422
    assert response.json()["code"] == "scope_unavailable"
    assert "no level-2 category" in response.json()["detail"] and "scope=global" in response.json()["detail"]


def test_cached_answers_are_invalidated_by_re_embedding(shopper, catalogue):
    first = similar(shopper, k=3, scope="level2").json()
    again = similar(shopper, k=3, scope="level2").json()
    assert again["meta"]["cached"] is True and again["neighbours"] == first["neighbours"]

    query, twin = catalogue["products"][0], catalogue["products"][20]
    vector = np.asarray(ImageEmbedding.objects.get(product=query).embedding, dtype=np.float32)
    job = EmbeddingJob.objects.create(model_version=VERSION)
    image_embeddings_write(job=job, failures={}, counts={"done": 1}, rows=[
        ImageEmbedding(product=twin, model_version=VERSION, embedding=vector, fingerprint="re-embedded",
                       level2_id=twin.level2_id, level3_id=twin.level3_id)])

    after = similar(shopper, k=3, scope="level2").json()
    assert after["meta"]["cached"] is False
    assert after["neighbours"][0]["external_id"] == "sku-20"


def test_the_schema_documents_the_endpoint(api_client, make_user):
    api_client.force_login(make_user("admin", staff=True))

    schema = api_client.get("/api/v1/schema/", {"format": "json"}).json()

    operation = schema["paths"]["/api/v1/products/{external_id}/similar/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"k", "scope", "modality", "source", "external_id"}
