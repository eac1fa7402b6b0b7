"""Recall of the HNSW index against exact search, on real embeddings of 2,500 Myntra product photos.

The photos are embedded once (about 25 s at 100 images/s) and the vectors cached under pytest's cache
directory, keyed by the model version and the file list, so later runs start in a second.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection

from labelapp.catalogue.models import CategorySource, Product, split_for
from labelapp.catalogue.services.categories import category_path_ensure
from similarity.models import EmbeddingKind, ImageEmbedding, Scope
from similarity.selectors.evaluation import embedding_recall_measure
from similarity.selectors.settings import similarity_settings
from similarity.services.embeddings import image_embedder_get
from similarity.services.spaces import embedding_space_ensure

MYNTRA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "myntra-fashion"
N_PHOTOS = 2500

needs_myntra = pytest.mark.skipif(not (MYNTRA / "images").is_dir(),
                                  reason=f"the Myntra photos are not at {MYNTRA} (../shared is absent)")


@pytest.fixture(scope="session")
def myntra_embeddings(request):
    """Return (ids, categories {id: (master, sub, article)}, titles, vectors float32 [n, 1280]) of 2,500 photos."""
    paths = sorted((MYNTRA / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    paths = paths[:: max(1, len(paths) // N_PHOTOS)][:N_PHOTOS]  # spread over the whole id range
    rows = {}
    with open(MYNTRA / "styles_clean.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows[row["id"]] = row
    version = similarity_settings().model_version
    digest = hashlib.sha1((version + "|" + "|".join(p.name for p in paths)).encode()).hexdigest()[:16]
    cache_file = Path(request.config.cache.mkdir("similarity-myntra")) / f"{digest}.npy"
    if cache_file.exists():
        vectors = np.load(cache_file)
    else:
        result = image_embedder_get(model_version=version).embed_paths([str(p) for p in paths])
        assert not result.errors, result.errors
        vectors = result.vectors
        np.save(cache_file, vectors)
    ids = [p.stem for p in paths]
    categories = {i: (rows[i]["masterCategory"], rows[i]["subCategory"], rows[i]["articleType"]) for i in ids}
    titles = {i: rows[i]["productDisplayName"] for i in ids}
    return ids, categories, titles, vectors


@needs_myntra
def test_halfvec_keeps_the_exact_neighbours_of_float32(myntra_embeddings):
    _, _, _, vectors = myntra_embeddings
    halves = vectors.astype(np.float16).astype(np.float32)
    halves /= np.linalg.norm(halves, axis=1, keepdims=True)
    queries = np.arange(0, len(vectors), 5)
    full_scores, half_scores = vectors[queries] @ vectors.T, halves[queries] @ halves.T
    full_scores[np.arange(len(queries)), queries] = half_scores[np.arange(len(queries)), queries] = -2
    for k in (10, 100):
        truth = np.argsort(-full_scores, axis=1)[:, :k]
        found = np.argsort(-half_scores, axis=1)[:, :k]
        recall = np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)])
        assert recall >= 0.995, f"halfvec recall@{k} = {recall:.4f}"
    assert np.abs(full_scores - half_scores)[full_scores > -2].max() < 1e-3


@needs_myntra
@pytest.mark.django_db
def test_index_recall_against_exact_search_is_at_least_095(myntra_embeddings, capsys):
    ids, categories, titles, vectors = myntra_embeddings
    version = similarity_settings().model_version
    cache: dict = {}
    leaves = {i: category_path_ensure(names=list(categories[i]), cache=cache) for i in ids}
    Product.objects.bulk_create([
        Product(source="myntra", external_id=i, raw={}, title=titles[i], split=split_for(source="myntra",
                external_id=i), image=f"myntra/{i}.jpg", category=leaves[i], category_source=CategorySource.FEED,
                level2_id=leaves[i].level2_id, level3_id=leaves[i].level3_id) for i in ids
    ])
    product_ids = dict(Product.objects.filter(source="myntra").values_list("external_id", "id"))
    embedding_space_ensure(model_version=version, kind=EmbeddingKind.IMAGE, dim=1280)
    # Bulk-load, then build the HNSW index as after a bulk import (5x faster than inserting into the graph one row
    # at a time; the graph is built by the same algorithm). The incremental path is the job tests' business.
    hnsw = next(index for index in ImageEmbedding._meta.indexes if index.name == "imageembedding_hnsw_cos")
    with connection.schema_editor() as editor:
        editor.remove_index(ImageEmbedding, hnsw)
    ImageEmbedding.objects.bulk_create([
        ImageEmbedding(product_id=product_ids[i], model_version=version, embedding=vector, fingerprint="myntra",
                       level2_id=leaves[i].level2_id, level3_id=leaves[i].level3_id)
        for i, vector in zip(ids, vectors)
    ], batch_size=500)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # check the deferred foreign keys before the DDL
    with connection.schema_editor() as editor:
        editor.add_index(ImageEmbedding, hnsw)

    rows = embedding_recall_measure(queries=50, ks=(10, 50), scopes=(Scope.LEVEL2, Scope.LEVEL3, Scope.GLOBAL))

    for row in rows:
        assert row.queries >= 45
        assert row.recall_hnsw >= 0.95, row
        assert row.recall_auto >= 0.95, row
    assert {row.ef_search for row in rows} == {80, 100}  # max(80, 2k) for k = 10 and k = 50
    call_command("similarity_recall_check", "--queries", "10", "--k", "10", "--scopes", "level2,global")
    out = capsys.readouterr().out
    assert "recall hnsw" in out and "level2" in out and "global" in out
