"""Precision@10 of same-articleType neighbours on the Myntra photos: image, text and hybrid, global and level-2.

Run:  DJANGO_DEBUG=1 .venv/bin/python bench/bench_precision.py [--photos 0] [--queries 0] [--text-queries 2000]

All 9,583 Myntra photos (or the first --photos by id) become products in a throwaway database (created and
migrated here, dropped at the end) under the category tree masterCategory > subCategory > articleType, so
level 2 = subCategory and level 3 = articleType. A neighbour is relevant when its articleType equals the query's;
precision@10 of a query = relevant / neighbours returned (10, or fewer only when the scope holds fewer), averaged
over the queries.

1. Exact, in NumPy on the float32 vectors: the embedding's own quality, globally and within the level-2 category,
   plus halfvec (float16) against float32: recall of the exact top-10 / top-100.
2. Through the product: recall@10/@100 of the index against exact search (200 queries per scope), then
   `product_similar_list` (pgvector, halfvec, HNSW or exact scan as it chooses, response cache off) for every
   photo (--queries to sample), globally and within level 2: what a shopper gets.
3. Title text vectors (the text job fits TF-IDF + LSA on the titles) and hybrid image+text, through the product on
   --text-queries sampled photos, and a sweep of the hybrid text weight in NumPy (exact) to choose the default.

The image vectors are cached in bench/out/ (keyed by model version and photo list) so a re-run takes minutes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

MYNTRA = ROOT.parent / "shared" / "datasets" / "myntra-fashion"
OUT = ROOT / "bench" / "out"
BENCH_DATABASE = "bench_labelapp_precision"
K = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=0, help="First N photos by id (0 = all 9,583).")
    parser.add_argument("--queries", type=int, default=0, help="Image queries through the product (0 = every photo).")
    parser.add_argument("--text-queries", type=int, default=2000, help="Text and hybrid queries through the product.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (MYNTRA / "images").is_dir():
        sys.exit(f"no photos at {MYNTRA / 'images'}")

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    settings.MEDIA_ROOT = MYNTRA / "images"
    settings.ARTEFACT_ROOT = OUT / "artefacts"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = BENCH_DATABASE
    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        run(args)
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)


def photos_and_metadata(limit: int):
    paths = sorted((MYNTRA / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    if limit:
        paths = paths[:limit]
    with open(MYNTRA / "styles_clean.csv", newline="", encoding="utf-8") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    return paths, [rows[p.stem] for p in paths]


def image_vectors(paths):
    import numpy as np

    from similarity.selectors.settings import similarity_settings
    from similarity.services.embeddings import image_embedder_get

    version = similarity_settings().model_version
    digest = hashlib.sha1((version + "|" + "|".join(p.name for p in paths)).encode()).hexdigest()[:16]
    cached = OUT / f"myntra_image_vectors_{digest}.npy"
    if cached.exists():
        print(f"image vectors from {cached.relative_to(ROOT)}")
        return np.load(cached)
    started = time.perf_counter()
    result = image_embedder_get(model_version=version).embed_paths([str(p) for p in paths])
    assert not result.errors, result.errors
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(cached, result.vectors)
    print(f"embedded {len(paths)} photos in {time.perf_counter() - started:.0f} s -> {cached.relative_to(ROOT)}")
    return result.vectors


def exact_precision(vectors, article, sub, *, within_sub: bool, chunk: int = 1024) -> float:
    """Mean precision@K of same-article neighbours by exact cosine (vectors L2-normalised)."""
    import numpy as np

    values = []
    for start in range(0, len(vectors), chunk):
        scores = vectors[start:start + chunk] @ vectors.T
        rows = np.arange(start, min(start + chunk, len(vectors)))
        scores[rows - start, rows] = -np.inf
        if within_sub:
            scores[sub[rows][:, None] != sub[None, :]] = -np.inf
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        for offset, query in enumerate(rows):
            hits = [j for j in top[offset] if np.isfinite(scores[offset, j])]
            if hits:
                values.append(np.mean(article[hits] == article[query]))
    return float(np.mean(values))


def run(args) -> None:
    import numpy as np
    from django.db import connection

    from labelapp.catalogue.models import CategorySource, Product, split_for
    from labelapp.catalogue.services.categories import category_path_ensure
    from similarity.models import EmbeddingKind, ImageEmbedding, Modality, Scope
    from similarity.selectors.evaluation import embedding_recall_measure
    from similarity.selectors.search import embedding_vectors
    from similarity.selectors.settings import similarity_settings
    from similarity.selectors.similar import SimilarityError, product_similar_list
    from similarity.services.embeddings import embedding_job_execute
    from similarity.services.jobs import embedding_job_start
    from similarity.services.spaces import embedding_space_ensure

    paths, meta = photos_and_metadata(args.photos)
    vectors = image_vectors(paths)
    article = np.array([row["articleType"] for row in meta])
    sub = np.array([row["subCategory"] for row in meta])
    print(f"{len(paths)} photos, {len(set(article))} article types, {len(set(sub))} level-2 categories")

    print("\n1. exact search on float32 vectors (the embedding itself)")
    for within_sub in (False, True):
        print(f"   precision@{K} same articleType, {'within level 2' if within_sub else 'global        '}: "
              f"{exact_precision(vectors, article, sub, within_sub=within_sub):.3f}")
    halves = vectors.astype(np.float16).astype(np.float32)
    halves /= np.linalg.norm(halves, axis=1, keepdims=True)
    queries = np.random.default_rng(args.seed).choice(len(vectors), size=min(1000, len(vectors)), replace=False)
    full, half = vectors[queries] @ vectors.T, halves[queries] @ halves.T
    full[np.arange(len(queries)), queries] = half[np.arange(len(queries)), queries] = -2
    for k in (10, 100):
        truth, found = np.argsort(-full, axis=1)[:, :k], np.argsort(-half, axis=1)[:, :k]
        recall = np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)])
        print(f"   halfvec vs float32, exact top-{k} recall over {len(queries)} queries: {recall:.4f}")
    print(f"   largest score difference halfvec vs float32: {np.abs(full - half)[full > -2].max():.2e}")

    started = time.perf_counter()
    cache: dict = {}
    leaves = [category_path_ensure(names=[r["masterCategory"], r["subCategory"], r["articleType"]], cache=cache)
              for r in meta]
    Product.objects.bulk_create([
        Product(source="myntra", external_id=r["id"], raw={}, title=r["productDisplayName"], image=f"{r['id']}.jpg",
                split=split_for(source="myntra", external_id=r["id"]), category=leaf,
                category_source=CategorySource.FEED,
                level2_id=leaf.level2_id, level3_id=leaf.level3_id) for r, leaf in zip(meta, leaves)
    ], batch_size=2000)
    products = list(Product.objects.order_by("id"))  # same order as `paths` (ids ascend with the photos)
    version = similarity_settings().model_version
    embedding_space_ensure(model_version=version, kind=EmbeddingKind.IMAGE, dim=vectors.shape[1])
    hnsw = next(index for index in ImageEmbedding._meta.indexes if index.name == "imageembedding_hnsw_cos")
    with connection.schema_editor() as editor:  # bulk load, then build the graph once (as after a bulk import)
        editor.remove_index(ImageEmbedding, hnsw)
    ImageEmbedding.objects.bulk_create([
        ImageEmbedding(product=p, model_version=version, embedding=v, fingerprint="bench", level2_id=p.level2_id,
                       level3_id=p.level3_id) for p, v in zip(products, vectors)
    ], batch_size=1000)
    with connection.schema_editor() as editor:
        editor.add_index(ImageEmbedding, hnsw)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ImageEmbedding._meta.db_table}")
    print(f"\n{len(products)} products and image vectors loaded, HNSW built in {time.perf_counter() - started:.0f} s")

    print("\n2. through the product (pgvector halfvec)")
    rows = embedding_recall_measure(queries=200, ks=(10, 100), scopes=(Scope.GLOBAL, Scope.LEVEL2, Scope.LEVEL3))
    print("   recall against exact search, 200 queries (hnsw: the graph walk alone; auto: what queries get):")
    for row in rows:
        print(f"     {row.scope:6} k={row.k:<3} ef_search={row.ef_search:<3} recall hnsw {row.recall_hnsw:.3f}, "
              f"auto {row.recall_auto:.3f} ({row.auto_exact_share:.0%} exact scans); "
              f"median {row.hnsw_ms_median:.1f} ms hnsw, {row.exact_ms_median:.1f} ms exact")

    rng = random.Random(args.seed)
    image_queries = products if not args.queries else rng.sample(products, min(args.queries, len(products)))

    def through_product(queries, *, scope: str, modality: str) -> tuple[float, float, dict]:
        values, strategies, started = [], {}, time.perf_counter()
        for query in queries:
            try:
                result = product_similar_list(product=query, k=K, scope=scope, modality=modality, use_cache=False)
            except SimilarityError:
                continue
            if result.neighbours and not result.fallback:  # a hybrid answered by one modality is not the blend
                values.append(np.mean([n.product.level3_id == query.level3_id for n in result.neighbours]))
                strategies[result.trace.strategy] = strategies.get(result.trace.strategy, 0) + 1
        milliseconds = 1000 * (time.perf_counter() - started) / max(1, len(queries))
        return float(np.mean(values)), milliseconds, strategies

    print(f"   precision over {len(image_queries)} image queries (`product_similar_list`, k={K}):")
    for scope in (Scope.GLOBAL, Scope.LEVEL2):
        precision, ms, strategies = through_product(image_queries, scope=scope, modality=Modality.IMAGE)
        print(f"   image  {scope:6}: precision@{K} {precision:.3f}   ({ms:.1f} ms/query, {strategies})")

    started = time.perf_counter()
    job = embedding_job_execute(job_id=embedding_job_start(kind=EmbeddingKind.TEXT, model_version="",
                                                           enqueue=False).id)
    print(f"\n3. text model {job.model_version} fitted and {job.done} titles embedded in "
          f"{time.perf_counter() - started:.0f} s ({job.failed} titles without a known word)")
    text_queries = rng.sample(products, min(args.text_queries, len(products)))
    weight = similarity_settings().hybrid_text_weight
    for modality in (Modality.TEXT, Modality.HYBRID):
        for scope in (Scope.GLOBAL, Scope.LEVEL2):
            precision, ms, _ = through_product(text_queries, scope=scope, modality=modality)
            label = modality if modality == Modality.TEXT else f"hybrid (text weight {weight})"
            print(f"   {label:26} {scope:6}: precision@{K} {precision:.3f}   ({ms:.1f} ms/query, "
                  f"{len(text_queries)} queries)")

    ids, text_vectors = embedding_vectors(kind=EmbeddingKind.TEXT, model_version=job.model_version)
    position = {product.id: index for index, product in enumerate(products)}
    text_full = np.zeros((len(products), text_vectors.shape[1]), dtype=np.float32)
    text_full[[position[i] for i in ids]] = text_vectors
    print("   hybrid text weight sweep, exact (NumPy), precision@10 global / within level 2:")
    for text_weight in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0):
        # (1 - w) * image cosine + w * text cosine is exactly the dot product of the concatenated vectors
        # [sqrt(1 - w) * image, sqrt(w) * text] (each part unit length): an exact hybrid ranking.
        blended = np.hstack([np.sqrt(1 - text_weight) * vectors, np.sqrt(text_weight) * text_full])
        print(f"     w={text_weight:.1f}: {exact_precision(blended, article, sub, within_sub=False):.3f} / "
              f"{exact_precision(blended, article, sub, within_sub=True):.3f}")


if __name__ == "__main__":
    main()
