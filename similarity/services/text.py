"""Text vectors of product titles (TF-IDF reduced by LSA, similarity.core.text) for modality=text and hybrid.

A text model is fitted on the catalogue's titles (a text job with an empty model version), saved under
ARTEFACT_ROOT/similarity/text/<version>.npz, and named by a digest of its vocabulary and projection, so the
same titles always give the same version. Later jobs of that version only transform new or changed titles.
The text embedded is the title alone: category paths are left out so that text neighbours are not
same-category by construction (which would make precision against categories meaningless).
"""

from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.expressions import RawSQL
from django.utils import timezone

from labelapp.catalogue.models import Product
from similarity.core.text import TfidfVectorizer
from similarity.models import EmbeddingFailure, EmbeddingJob, EmbeddingKind, EmbeddingSpace, TextEmbedding
from similarity.selectors.settings import similarity_settings
from similarity.services.job_chunks import JobProgress, halfvec_texts, job_product_chunks, job_product_ids
from similarity.services.spaces import embedding_space_ensure, embedding_spaces_bump

TEXT_CHUNK = 2000


def text_of(*, title: str) -> str:
    """Return the text a product is embedded by."""
    return title or ""


def _fingerprint(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:20]


@functools.lru_cache(maxsize=4)
def _vectorizer_load(path: str) -> TfidfVectorizer:
    return TfidfVectorizer.load(path)


def text_model_fit(*, dim: int | None = None, max_products: int | None = None, seed: int = 0) -> EmbeddingSpace:
    """Fit a text model on the catalogue's titles (a sample of at most `max_products`), save it, register it."""
    config = similarity_settings()
    dim = dim or config.text_dim
    limit = max_products or config.text_fit_max_products
    # A seeded hash order is a uniform, repeatable sample without ORDER BY random().
    titles = list(Product.objects.order_by(RawSQL("hashint8extended(labelapp_product.id, %s)", (seed,)))
                  .values_list("title", flat=True)[:limit])
    texts = [text_of(title=title) for title in titles]
    if not any(text.strip() for text in texts):
        raise ValueError("no product titles to fit a text model on")
    # Terms seen once carry no similarity signal on a big catalogue; small ones need every term.
    vectorizer = TfidfVectorizer(dim=dim, min_df=2 if len(texts) >= 1000 else 1, seed=seed).fit(texts)
    digest = hashlib.sha1()
    for term in sorted(vectorizer.vocabulary, key=vectorizer.vocabulary.__getitem__):
        digest.update(term.encode() + b"\x1f")
    digest.update(np.ascontiguousarray(vectorizer.components).tobytes())
    version = f"tfidf-lsa{dim}-{digest.hexdigest()[:10]}"
    folder = Path(settings.ARTEFACT_ROOT) / "similarity" / "text"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{version}.npz"
    vectorizer.save(path)
    return embedding_space_ensure(model_version=version, kind=EmbeddingKind.TEXT, dim=dim, artefact=str(path))


def text_job_run(*, job: EmbeddingJob, progress: JobProgress | None = None) -> None:
    """Embed the job's products' titles (fitting a new text model first when the job names none)."""
    started = time.perf_counter()
    if job.model_version:
        space = EmbeddingSpace.objects.get(model_version=job.model_version, kind=EmbeddingKind.TEXT)
    else:
        space = text_model_fit()
        EmbeddingJob.objects.filter(pk=job.pk).update(model_version=space.model_version)
        job.model_version = space.model_version
    fit_s = time.perf_counter() - started
    vectorizer = _vectorizer_load(space.artefact)
    in_scope = Product.objects.filter(id__in=job_product_ids(job=job)) if job.product_ids is not None else (
        Product.objects.all())
    EmbeddingJob.objects.filter(pk=job.pk).update(total=in_scope.count())
    for chunk in job_product_chunks(job=job, products=Product.objects.all(),
                                    fields=("id", "title", "level2_id", "level3_id"), chunk_size=TEXT_CHUNK):
        existing = dict(TextEmbedding.objects.filter(model_version=space.model_version,
                                                     product_id__in=[row["id"] for row in chunk])
                        .values_list("product_id", "fingerprint"))
        todo = []
        for row in chunk:
            text = text_of(title=row["title"])
            fingerprint = _fingerprint(text)
            if job.force or existing.get(row["id"]) != fingerprint:
                todo.append((row, text, fingerprint))
        vectors = vectorizer.transform([text for _, text, _ in todo]) if todo else np.zeros((0, space.dim))
        rows, empty = [], []
        for (row, _, fingerprint), vector, text in zip(todo, vectors, halfvec_texts(vectors)):
            if not vector.any():
                empty.append(row["id"])
                continue
            rows.append(TextEmbedding(product_id=row["id"], model_version=space.model_version, embedding=text,
                                      fingerprint=fingerprint, level2_id=row["level2_id"],
                                      level3_id=row["level3_id"]))
        _text_chunk_write(job=job, rows=rows, empty=empty, skipped=len(chunk) - len(todo))
        if progress:
            job.refresh_from_db()
            progress(job)
    total_s = time.perf_counter() - started
    EmbeddingJob.objects.filter(pk=job.pk).update(timings={"fit_s": round(fit_s, 3), "total_s": round(total_s, 3)})


@transaction.atomic
def _text_chunk_write(*, job: EmbeddingJob, rows: list[TextEmbedding], empty: list[int], skipped: int) -> None:
    version = job.model_version
    if rows:
        TextEmbedding.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["model_version", "product"],
            update_fields=["embedding", "fingerprint", "level2", "level3", "updated_at"],
        )
        EmbeddingFailure.objects.filter(model_version=version,
                                        product_id__in=[row.product_id for row in rows]).delete()
    if empty:
        TextEmbedding.objects.filter(model_version=version, product_id__in=empty).delete()
        EmbeddingFailure.objects.bulk_create(
            [EmbeddingFailure(product_id=product_id, model_version=version, reason="title has no known word",
                              job_id=job.id) for product_id in empty],
            update_conflicts=True, unique_fields=["model_version", "product"],
            update_fields=["reason", "job", "created_at"],
        )
    if rows or empty:
        embedding_spaces_bump(model_versions=[version])
    EmbeddingJob.objects.filter(pk=job.pk).update(
        done=F("done") + len(rows), skipped=F("skipped") + skipped, failed=F("failed") + len(empty),
        heartbeat_at=timezone.now(),
    )
