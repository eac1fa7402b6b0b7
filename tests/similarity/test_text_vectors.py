"""Title text vectors: fitting a text model, incremental updates, modality=text, a real worker running the job."""
from __future__ import annotations

import numpy as np
import pytest
from django.core.management import call_command

from similarity.models import EmbeddingFailure, EmbeddingJob, EmbeddingKind, EmbeddingSpace, JobStatus, TextEmbedding
from similarity.selectors.search import embedding_vectors
from similarity.selectors.settings import text_model_version_active
from similarity.selectors.similar import product_similar_list
from similarity.services.embeddings import embedding_job_execute
from similarity.services.jobs import embedding_job_start
from tests.factories import ProductFactory, category

TITLES = [
    "Peter England Men Navy Blue Checked Shirt", "Turtle Men Blue Slim Fit Casual Shirt",
    "Arrow Men White Formal Shirt", "Nike Men Black Running Shoes", "Puma Men Grey Sports Shoes",
    "Adidas Women Pink Running Shoes", "Titan Women Silver Analog Watch", "Fastrack Men Black Digital Watch",
    "Casio Unisex Steel Watch", "Levis Men Blue Slim Jeans", "Wrangler Women Black Skinny Jeans",
]


@pytest.fixture
def catalogue(db):
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    products = [ProductFactory(title=title, category=shirts, level2=shirts.level2, level3=shirts.level3)
                for title in TITLES]
    products.append(ProductFactory(title="!!! ???"))  # no word at all: no vector
    return products


@pytest.fixture(autouse=True)
def _artefacts_in_tmp(settings, tmp_path):
    settings.ARTEFACT_ROOT = tmp_path / "artefacts"


def run_text_job(**kwargs) -> EmbeddingJob:
    job = embedding_job_start(kind=EmbeddingKind.TEXT, enqueue=False, **kwargs)
    return embedding_job_execute(job_id=job.id)


@pytest.mark.django_db
def test_first_text_job_fits_a_model_and_embeds_every_title(catalogue, settings):
    job = run_text_job(model_version="")

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.model_version.startswith("tfidf-lsa256-")
    assert (job.total, job.done, job.failed) == (12, 11, 1)
    space = EmbeddingSpace.objects.get(model_version=job.model_version)
    assert space.kind == EmbeddingKind.TEXT and space.artefact.endswith(f"{job.model_version}.npz")
    assert text_model_version_active() == job.model_version
    _, vectors = embedding_vectors(kind=EmbeddingKind.TEXT, model_version=job.model_version)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)
    assert EmbeddingFailure.objects.get().reason == "title has no known word"


@pytest.mark.django_db
def test_later_jobs_embed_only_new_or_changed_titles(catalogue):
    fitted = run_text_job(model_version="")
    renamed = catalogue[0]
    renamed.title = "Peter England Men Red Checked Shirt"
    renamed.save()
    newcomer = ProductFactory(title="Roadster Men Olive Casual Shirt")

    update = run_text_job(product_ids=[renamed.id, newcomer.id, catalogue[1].id])

    assert update.model_version == fitted.model_version
    assert (update.total, update.done, update.skipped) == (3, 2, 1)
    assert TextEmbedding.objects.filter(product=newcomer).exists()


@pytest.mark.django_db
def test_text_neighbours_share_words(catalogue):
    run_text_job(model_version="")

    result = product_similar_list(product=catalogue[3], k=3, scope="global", modality="text")

    assert result.neighbours[0].product.title == "Adidas Women Pink Running Shoes"  # "running shoes"
    assert result.text_model_version.startswith("tfidf-") and result.model_version == ""


@pytest.mark.django_db
def test_build_text_vectors_command(catalogue, capsys):
    call_command("build_text_vectors", verbosity=0)
    first = capsys.readouterr().out
    call_command("build_text_vectors", verbosity=0)
    second = capsys.readouterr().out

    assert "11 embedded" in first and "1 without a known word" in first
    assert "0 embedded, 11 unchanged" in second


@pytest.mark.integration
def test_a_real_worker_runs_a_text_job_over_the_broker(celery_worker_process, catalogue):  # noqa: F811
    from similarity.tasks import embedding_job_execute_task

    job = embedding_job_start(kind=EmbeddingKind.TEXT, model_version="", enqueue=False)

    status = embedding_job_execute_task.apply_async(kwargs={"job_id": job.id},
                                                    queue=celery_worker_process["queue"]).get(timeout=90)

    assert status == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.done == 11 and TextEmbedding.objects.count() == 11
    assert "embedding_job_execute_task" in celery_worker_process["log"].read_text()


# The real-worker fixture lives with the integration tests; importing it registers it here.
from tests.integration.conftest import celery_worker_env, celery_worker_pool, celery_worker_process  # noqa: E402,F401
