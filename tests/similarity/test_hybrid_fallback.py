"""modality=hybrid falls back to the one modality a product has a vector for, says so, and is 409 only without both."""
from __future__ import annotations

import numpy as np
import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token

from labelapp.common.roles import API_CLIENT
from similarity.models import EmbeddingKind, ImageEmbedding, Modality, Scope, TextEmbedding
from similarity.selectors.similar import EmbeddingMissing, product_similar_list
from similarity.services.spaces import embedding_space_ensure, embedding_spaces_bump
from tests.factories import ProductFactory, category

pytestmark = pytest.mark.django_db

IMAGE_VERSION = "efficientnet_lite0-57934424"
TEXT_VERSION = "tfidf-test"


def unit_vectors(n: int, dim: int, *, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def store(products, *, kind: str, seed: int) -> None:
    model, version, dim = ((ImageEmbedding, IMAGE_VERSION, 1280) if kind == EmbeddingKind.IMAGE
                           else (TextEmbedding, TEXT_VERSION, 256))
    embedding_space_ensure(model_version=version, kind=kind, dim=dim)
    model.objects.bulk_create([
        model(product=p, model_version=version, embedding=v, fingerprint="t", level2_id=p.level2_id,
              level3_id=p.level3_id) for p, v in zip(products, unit_vectors(len(products), dim, seed=seed))])


@pytest.fixture
def catalogue(settings):
    """30 products with a photo vector and a title vector; one with only a photo, one with only a title, one bare."""
    settings.SIMILARITY_TEXT_MODEL_VERSION = TEXT_VERSION
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)

    def make(external_id: str, image: str = "p.jpg"):
        return ProductFactory(external_id=external_id, title=f"shirt {external_id}", category=shirts,
                              level2=shirts.level2, level3=shirts.level3, image=image)

    both = [make(f"sku-{i}") for i in range(30)]
    photo_only, title_only, bare = make("photo-only"), make("title-only", image=""), make("bare", image="")
    store(both + [photo_only], kind=EmbeddingKind.IMAGE, seed=1)
    store(both + [title_only], kind=EmbeddingKind.TEXT, seed=2)
    return {"both": both, "photo_only": photo_only, "title_only": title_only, "bare": bare}


def ids(result) -> list[int]:
    return [neighbour.product.id for neighbour in result.neighbours]


def test_a_title_without_a_text_vector_falls_back_to_the_photo(catalogue):
    query = catalogue["photo_only"]

    hybrid = product_similar_list(product=query, k=10, scope=Scope.LEVEL2, modality=Modality.HYBRID)

    image = product_similar_list(product=query, k=10, scope=Scope.LEVEL2, modality=Modality.IMAGE)
    assert ids(hybrid) == ids(image) and len(ids(hybrid)) == 10
    assert (hybrid.modality, hybrid.modality_used) == ("hybrid", "image")
    assert hybrid.fallback == ("Product 'photo-only' has no text vector (its title has no known word, or it was "
                               "imported after the text vectors were built): answered by image alone.")
    assert (hybrid.model_version, hybrid.text_model_version, hybrid.text_weight) == (IMAGE_VERSION, "", None)
    assert all(n.image_score is None and n.text_score is None for n in hybrid.neighbours)


def test_a_product_without_a_photo_falls_back_to_its_title(catalogue):
    query = catalogue["title_only"]

    hybrid = product_similar_list(product=query, k=10, scope=Scope.LEVEL2, modality=Modality.HYBRID)

    text = product_similar_list(product=query, k=10, scope=Scope.LEVEL2, modality=Modality.TEXT)
    assert ids(hybrid) == ids(text) and hybrid.modality_used == "text"
    assert hybrid.fallback == "Product 'title-only' has no image embedding (it has no image): answered by text alone."
    assert (hybrid.model_version, hybrid.text_model_version) == ("", TEXT_VERSION)


def test_a_product_with_both_vectors_is_blended_and_says_no_fallback(catalogue):
    hybrid = product_similar_list(product=catalogue["both"][0], k=10, scope=Scope.LEVEL2, modality=Modality.HYBRID)

    assert hybrid.modality_used == "hybrid" and hybrid.fallback is None and hybrid.text_weight == 0.3
    assert all(n.image_score is not None and n.text_score is not None for n in hybrid.neighbours)


def test_without_either_vector_hybrid_is_embedding_missing_naming_both(catalogue):
    with pytest.raises(EmbeddingMissing) as missing:
        product_similar_list(product=catalogue["bare"], k=10, scope=Scope.LEVEL2, modality=Modality.HYBRID)

    assert str(missing.value) == ("Product 'bare' has no image embedding (it has no image); product 'bare' has no "
                                  "text vector (its title has no known word, or it was imported after the text "
                                  "vectors were built): no modality can answer.")


def test_a_cached_fallback_gives_way_to_the_blend_once_the_title_is_embedded(catalogue):
    query = catalogue["photo_only"]
    assert product_similar_list(product=query, k=5, modality=Modality.HYBRID).modality_used == "image"

    store([query], kind=EmbeddingKind.TEXT, seed=3)
    embedding_spaces_bump(model_versions=[TEXT_VERSION])

    after = product_similar_list(product=query, k=5, modality=Modality.HYBRID)
    assert (after.cached, after.modality_used, after.fallback) == (False, "hybrid", None)


@pytest.fixture
def shopper(api_client, make_user, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    token = Token.objects.create(user=make_user("shop", API_CLIENT))
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api_client


def test_the_api_answers_hybrid_by_the_photo_and_says_so_matching_its_schema(shopper, catalogue):
    fallback = shopper.get("/api/v1/products/photo-only/similar/", {"modality": "hybrid", "k": 5})
    blended = shopper.get("/api/v1/products/sku-0/similar/", {"modality": "hybrid", "k": 5})
    neither = shopper.get("/api/v1/products/bare/similar/", {"modality": "hybrid"})

    assert fallback.status_code == 200 and blended.status_code == 200
    body = fallback.json()
    assert (body["modality"], body["modality_used"], body["text_weight"]) == ("hybrid", "image", None)
    assert "has no text vector" in body["fallback"] and body["count"] == 5
    assert (blended.json()["modality_used"], blended.json()["fallback"]) == ("hybrid", None)
    assert neither.status_code == 409 and neither.json()["code"] == "embedding_missing"
    assert "no modality can answer" in neither.json()["detail"]
    # The schema declares exactly the fields the answer has, the new ones included.
    schema = SchemaGenerator().get_schema(request=None, public=True)
    ok = schema["paths"]["/api/v1/products/{external_id}/similar/"]["get"]["responses"]["200"]
    output = schema["components"]["schemas"][ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert set(output["properties"]) == set(output["required"]) == set(body)
    assert output["properties"]["fallback"]["nullable"] is True
