"""Nearest-neighbour queries in pgvector: scopes, strategies, hybrid, caching by generation."""
from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from similarity.models import EmbeddingJob, EmbeddingKind, ImageEmbedding, Modality, Scope, TextEmbedding
from similarity.selectors import search
from similarity.selectors.search import embedding_nearest, embedding_vector, exact_scan_limit
from similarity.selectors.settings import similarity_settings
from similarity.selectors.similar import EmbeddingMissing, ScopeUnavailable, product_similar_list
from similarity.services.embeddings import image_embeddings_write
from similarity.services.neighbours import neighbour_cache_build
from similarity.services.spaces import embedding_space_ensure
from tests.factories import ProductFactory, category

pytestmark = pytest.mark.django_db

VERSION = "efficientnet_lite0-57934424"


def unit_vectors(n: int, dim: int, *, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def store(products, vectors, *, kind=EmbeddingKind.IMAGE, version=VERSION):
    model = ImageEmbedding if kind == EmbeddingKind.IMAGE else TextEmbedding
    embedding_space_ensure(model_version=version, kind=kind, dim=vectors.shape[1])
    model.objects.bulk_create([
        model(product=p, model_version=version, embedding=v, fingerprint="t", level2_id=p.level2_id,
              level3_id=p.level3_id) for p, v in zip(products, vectors)
    ])


@pytest.fixture
def catalogue():
    """120 products: 24 in a small level-2 category (20%), the rest spread over three leaves of a large one."""
    small = category("Accessories > Scarves > Silk Scarves", exclusive=True)
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    tees = category("Apparel > Topwear > Tshirts", exclusive=True)
    jeans = category("Apparel > Bottomwear > Jeans", exclusive=True)
    leaves = [small] * 24 + [shirts, tees, jeans] * 32
    products = [ProductFactory(category=leaf, level2=leaf.level2, level3=leaf.level3, image=f"p/{i}.jpg")
                for i, leaf in enumerate(leaves)]
    store(products, unit_vectors(len(products), 1280, seed=1))
    return {"products": products, "small": small, "shirts": shirts, "tees": tees, "jeans": jeans}


def nearest(product, *, k, scope, strategy):
    category_id = {Scope.LEVEL2: product.level2_id, Scope.LEVEL3: product.level3_id}.get(scope)
    vector = embedding_vector(kind=EmbeddingKind.IMAGE, model_version=VERSION, product_id=product.id)
    return embedding_nearest(kind=EmbeddingKind.IMAGE, model_version=VERSION, vector=vector, k=k, scope=scope,
                             category_id=category_id, exclude_product_id=product.id, strategy=strategy)


def level2_of(product_ids):
    return set(ImageEmbedding.objects.filter(product_id__in=product_ids).values_list("level2_id", flat=True))


@pytest.mark.parametrize("strategy", ["hnsw", "exact", "auto"])
def test_a_selective_filter_still_returns_exactly_k_all_in_scope(catalogue, strategy):
    query = catalogue["products"][0]  # in the 20% category: a plain top-40 graph answer would hold ~8 of them

    hits, trace = nearest(query, k=20, scope=Scope.LEVEL2, strategy=strategy)

    assert len(hits) == 20
    assert level2_of([hit.product_id for hit in hits]) == {catalogue["small"].level2_id}
    assert query.id not in {hit.product_id for hit in hits}
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)  # relaxed order re-sorted by exact distance
    assert trace.strategy == ("exact" if strategy == "auto" else strategy)  # 24 rows: exact is cheaper


def test_a_scope_with_fewer_than_k_rows_returns_all_of_them(catalogue):
    hits, _ = nearest(catalogue["products"][0], k=50, scope=Scope.LEVEL3, strategy="auto")

    assert len(hits) == 23


def test_hnsw_answers_match_the_exact_scan(catalogue):
    query = catalogue["products"][30]
    walked, _ = nearest(query, k=20, scope=Scope.LEVEL2, strategy="hnsw")
    exact, _ = nearest(query, k=20, scope=Scope.LEVEL2, strategy="exact")

    assert len({h.product_id for h in walked} & {h.product_id for h in exact}) >= 19
    assert exact[0].score == pytest.approx(walked[0].score, abs=1e-6)


def test_large_scopes_take_the_graph_and_fall_back_to_exact_when_the_walk_stops_short(catalogue, settings,
                                                                                       monkeypatch):
    settings.SIMILARITY_EXACT_SCAN_MIN_ROWS = 10
    settings.SIMILARITY_EXACT_SCAN_MAX_ROWS = 10
    query = catalogue["products"][0]

    _, trace = nearest(query, k=20, scope=Scope.LEVEL2, strategy="auto")
    assert (trace.strategy, trace.ef_search, trace.candidates) == ("hnsw", 80, 11)  # counted up to MAX + 1

    real = search._nearest_run

    def walk_stops_at_hnsw_max_scan_tuples(**kwargs):
        hits = real(**kwargs)
        return hits if kwargs["exact"] else hits[:7]

    monkeypatch.setattr(search, "_nearest_run", walk_stops_at_hnsw_max_scan_tuples)
    hits, trace = nearest(query, k=20, scope=Scope.LEVEL2, strategy="auto")
    assert trace.strategy == "hnsw+exact" and len(hits) == 20


def test_exact_scan_limit_grows_with_k_and_the_index():
    config = similarity_settings()

    assert exact_scan_limit(k=20, index_rows=0, config=config) == config.exact_scan_min_rows
    assert exact_scan_limit(k=20, index_rows=20_000, config=config) == 1549  # sqrt(6 * 20 * 20k)
    assert exact_scan_limit(k=20, index_rows=1_000_000, config=config) == config.exact_scan_max_rows
    assert exact_scan_limit(k=200, index_rows=100_000_000, config=config) == config.exact_scan_max_rows


def test_the_query_settings_do_not_leak_into_the_callers_transaction(catalogue):
    nearest(catalogue["products"][0], k=5, scope=Scope.LEVEL2, strategy="exact")
    nearest(catalogue["products"][0], k=5, scope=Scope.GLOBAL, strategy="hnsw")

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_indexscan'), current_setting('enable_seqscan')")
        assert cursor.fetchone() == ("on", "on")


def test_similar_list_scopes_and_errors(catalogue):
    tee = catalogue["products"][25]

    level3 = product_similar_list(product=tee, k=10, scope=Scope.LEVEL3)
    assert {n.product.level3_id for n in level3.neighbours} == {tee.level3_id}
    assert [n.rank for n in level3.neighbours] == list(range(1, 11))
    assert level3.query.id == tee.id and level3.model_version == VERSION
    whole = product_similar_list(product=tee, k=10, scope=Scope.GLOBAL)
    assert len(whole.neighbours) == 10

    shallow = ProductFactory(category=category("Sale", exclusive=True))
    shallow.level2_id = None
    with pytest.raises(ScopeUnavailable, match="no level-2 category"):
        product_similar_list(product=shallow, scope=Scope.LEVEL2)
    with pytest.raises(EmbeddingMissing, match="modality=text"):
        product_similar_list(product=shallow, scope=Scope.GLOBAL)


def test_answers_are_cached_until_the_generation_moves(catalogue, django_assert_max_num_queries):
    query = catalogue["products"][40]
    first = product_similar_list(product=query, k=5, scope=Scope.LEVEL2)
    with django_assert_max_num_queries(1):  # the generation lookup only
        cached = product_similar_list(product=query, k=5, scope=Scope.LEVEL2)
    assert cached.cached and cached.neighbours == first.neighbours

    twin = catalogue["products"][43]  # same level-2; becomes a copy of the query's vector
    vector = np.asarray(ImageEmbedding.objects.get(product=query).embedding, dtype=np.float32)
    job = EmbeddingJob.objects.create(model_version=VERSION)
    image_embeddings_write(job=job, failures={}, counts={"done": 1}, rows=[
        ImageEmbedding(product=twin, model_version=VERSION, embedding=vector, fingerprint="new",
                       level2_id=twin.level2_id, level3_id=twin.level3_id)])

    fresh = product_similar_list(product=query, k=5, scope=Scope.LEVEL2)
    assert not fresh.cached
    assert fresh.neighbours[0].product.id == twin.id and fresh.neighbours[0].score == pytest.approx(1.0, abs=1e-3)


def test_neighbour_cache_serves_queries_while_its_generation_is_current(catalogue):
    query = catalogue["products"][50]
    live = product_similar_list(product=query, k=10, scope=Scope.LEVEL2, use_cache=False)

    written = neighbour_cache_build(scope=Scope.LEVEL2, product_ids=[query.id], k=20)

    assert written == 1
    stored = product_similar_list(product=query, k=10, scope=Scope.LEVEL2, use_cache=False)
    assert stored.trace.strategy == "cache"
    assert [n.product.id for n in stored.neighbours] == [n.product.id for n in live.neighbours]
    job = EmbeddingJob.objects.create(model_version=VERSION)
    image_embeddings_write(job=job, rows=[], failures={catalogue["products"][51].id: ("x", "missing: gone")},
                           counts={"failed": 1})
    assert product_similar_list(product=query, k=10, scope=Scope.LEVEL2, use_cache=False).trace.strategy != "cache"


def test_hybrid_blends_image_and_text_scores_over_both_candidate_sets(catalogue, settings):
    products = catalogue["products"]
    text_version = "tfidf-test"
    store(products, unit_vectors(len(products), 256, seed=2), kind=EmbeddingKind.TEXT, version=text_version)
    settings.SIMILARITY_TEXT_MODEL_VERSION = text_version
    query = products[60]

    image_only = product_similar_list(product=query, k=10, scope=Scope.GLOBAL, modality=Modality.HYBRID,
                                      text_weight=0.0)
    text_only = product_similar_list(product=query, k=10, scope=Scope.GLOBAL, modality=Modality.TEXT)
    text_heavy = product_similar_list(product=query, k=10, scope=Scope.GLOBAL, modality=Modality.HYBRID,
                                      text_weight=1.0)
    blended = product_similar_list(product=query, k=10, scope=Scope.GLOBAL, modality=Modality.HYBRID,
                                   text_weight=0.3)

    image = product_similar_list(product=query, k=10, scope=Scope.GLOBAL, modality=Modality.IMAGE)
    assert [n.product.id for n in image_only.neighbours] == [n.product.id for n in image.neighbours]
    assert [n.product.id for n in text_heavy.neighbours] == [n.product.id for n in text_only.neighbours]
    for n in blended.neighbours:
        assert n.score == pytest.approx(0.7 * n.image_score + 0.3 * n.text_score, abs=1e-5)
    assert blended.text_weight == 0.3 and blended.text_model_version == text_version
