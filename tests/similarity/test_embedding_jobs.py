"""Embedding jobs with the real EfficientNet-Lite0 embedder: vectors, failures, idempotence, versions, hooks."""
from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from PIL import Image

from labelapp.catalogue.services.product_categories import products_category_refresh
from similarity.models import EmbeddingFailure, EmbeddingJob, EmbeddingKind, EmbeddingSpace, ImageEmbedding, JobStatus
from similarity.selectors.search import embedding_vectors
from similarity.selectors.settings import similarity_settings
from similarity.services import embeddings as embedding_services
from similarity.services.category_copies import embeddings_sync_categories
from similarity.services.embeddings import embedding_job_execute, image_embedder_get
from similarity.services.jobs import embedding_job_start, embedding_jobs_reap, embeddings_refresh_after_import
from tests.factories import LabelFactory, ProductFactory, category

pytestmark = pytest.mark.django_db

COLOURS = [(200, 30, 30), (30, 160, 60), (40, 60, 200), (240, 200, 20), (20, 20, 20)]


@pytest.fixture(scope="module")
def embedder():
    """The real embedder, built once per process (the service caches it) and shared by every test."""
    return image_embedder_get(model_version=similarity_settings().model_version)


def write_photo(media_root, name: str, *, colour, size=(160, 200), stripes: int = 0) -> str:
    path = media_root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    for index in range(stripes):
        image.paste((255, 255, 255), (0, index * 20, size[0], index * 20 + 8))
    image.save(path, "JPEG", quality=90)
    return name


@pytest.fixture
def catalogue(settings):
    """Five products with real photos, one with random bytes, one truncated JPEG, one whose file is gone."""
    media = settings.MEDIA_ROOT
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    good = []
    for index, colour in enumerate(COLOURS):
        name = write_photo(media, f"products/test/good{index}.jpg", colour=colour, stripes=index)
        good.append(ProductFactory(image=name, category=shirts, level2=shirts.level2, level3=shirts.level3))
    (media / "products/test/noise.jpg").write_bytes(os.urandom(3000))
    write_photo(media, "products/test/whole.jpg", colour=(90, 90, 90), size=(400, 400))
    data = (media / "products/test/whole.jpg").read_bytes()
    (media / "products/test/truncated.jpg").write_bytes(data[: len(data) // 3])
    bad = {
        "noise": ProductFactory(image="products/test/noise.jpg"),
        "truncated": ProductFactory(image="products/test/truncated.jpg"),
        "missing": ProductFactory(image="products/test/gone.jpg"),
    }
    no_image = ProductFactory(image="")
    return {"good": good, "bad": bad, "no_image": no_image, "shirts": shirts}


def run_job(**kwargs) -> EmbeddingJob:
    job = embedding_job_start(enqueue=False, **kwargs)
    return embedding_job_execute(job_id=job.id)


def test_job_stores_l2_normalised_vectors_and_records_bad_images(embedder, catalogue):
    job = run_job()

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (job.total, job.done, job.skipped, job.failed) == (8, 5, 0, 3)
    assert job.timings["embed_s"] > 0 and job.timings["total_s"] > 0
    ids, vectors = embedding_vectors(kind=EmbeddingKind.IMAGE, model_version=job.model_version)
    assert sorted(ids) == sorted(p.id for p in catalogue["good"])
    assert vectors.shape == (5, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)  # halfvec rounding
    # The stored vector is the embedder's own output for that file (halfvec keeps cosine to 1e-4).
    first = catalogue["good"][0]
    direct = embedder.embed_paths([first.image.path]).vectors[0]
    stored = vectors[list(ids).index(first.id)]
    assert float(direct @ stored / np.linalg.norm(stored)) > 0.9999
    reasons = dict(EmbeddingFailure.objects.values_list("product_id", "reason"))
    assert reasons[catalogue["bad"]["noise"].id].startswith("not_an_image")
    assert reasons[catalogue["bad"]["truncated"].id].startswith(("truncated", "corrupt"))
    assert reasons[catalogue["bad"]["missing"].id].startswith("missing")
    row = ImageEmbedding.objects.get(product=first)
    assert (row.level2_id, row.level3_id) == (catalogue["shirts"].level2_id, catalogue["shirts"].level3_id)
    assert EmbeddingSpace.objects.get(model_version=job.model_version).generation > 1


def test_second_job_skips_unchanged_images_and_reembeds_changed_ones(embedder, catalogue, settings):
    run_job()
    changed = catalogue["good"][2]
    before = np.asarray(ImageEmbedding.objects.get(product=changed).embedding)
    generation = EmbeddingSpace.objects.get().generation
    write_photo(settings.MEDIA_ROOT, changed.image.name, colour=(250, 120, 200), size=(300, 200))

    again = run_job()

    assert (again.done, again.skipped, again.failed) == (1, 4, 3)  # known bad files are not decoded again
    after = np.asarray(ImageEmbedding.objects.get(product=changed).embedding)
    assert not np.allclose(before, after)
    assert EmbeddingSpace.objects.get().generation == generation + 1
    unchanged = run_job()
    assert (unchanged.done, unchanged.skipped) == (0, 5)
    assert EmbeddingSpace.objects.get().generation == generation + 1  # nothing written, caches stay valid


def test_force_reembeds_everything_and_retries_failures(embedder, catalogue):
    run_job()

    forced = run_job(force=True)

    assert (forced.done, forced.skipped, forced.failed) == (5, 0, 3)
    assert ImageEmbedding.objects.count() == 5


def test_a_fixed_image_clears_its_failure_and_a_broken_one_loses_its_vector(embedder, catalogue, settings):
    run_job()
    noise, good = catalogue["bad"]["noise"], catalogue["good"][0]
    write_photo(settings.MEDIA_ROOT, noise.image.name, colour=(10, 200, 200))
    (settings.MEDIA_ROOT / good.image.name).write_bytes(b"not a jpeg any more")

    run_job()

    assert ImageEmbedding.objects.filter(product=noise).exists()
    assert not EmbeddingFailure.objects.filter(product=noise).exists()
    assert not ImageEmbedding.objects.filter(product=good).exists()
    assert EmbeddingFailure.objects.get(product=good).reason.startswith("not_an_image")


def test_a_removed_image_removes_the_vector(embedder, catalogue):
    run_job()
    product = catalogue["good"][1]
    product.image = ""
    product.save()

    run_job(product_ids=[product.id])

    assert not ImageEmbedding.objects.filter(product=product).exists()


def test_a_crash_mid_job_keeps_committed_chunks_and_the_next_job_finishes(embedder, catalogue, settings,
                                                                          monkeypatch):
    settings.SIMILARITY_JOB_CHUNK_SIZE = 2
    calls = {"n": 0}
    real = type(embedder).embed_paths

    def flaky(self, paths):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker lost its GPU")
        return real(self, paths)

    monkeypatch.setattr(type(embedder), "embed_paths", flaky)

    crashed = run_job()

    assert crashed.status == JobStatus.FAILED and "worker lost its GPU" in crashed.error
    assert crashed.done == 2 and ImageEmbedding.objects.count() == 2
    monkeypatch.setattr(type(embedder), "embed_paths", real)
    resumed = run_job()
    assert resumed.status == JobStatus.SUCCEEDED
    assert (resumed.done, resumed.skipped) == (3, 2)
    assert ImageEmbedding.objects.count() == 5


def test_a_new_model_version_writes_new_rows_beside_the_old(embedder, catalogue, monkeypatch):
    run_job()

    class NextBackbone:
        """The same network under another version name, standing in for a backbone change."""
        model_version, dim = "efficientnet_lite0-retrained", 1280

        def embed_paths(self, paths):
            return embedder.embed_paths(paths)

    monkeypatch.setattr(embedding_services, "image_embedder_get", lambda **kwargs: NextBackbone())
    switched = run_job(model_version="efficientnet_lite0-retrained")

    assert switched.done == 5
    versions = sorted(ImageEmbedding.objects.values_list("model_version", flat=True).distinct())
    assert versions == ["efficientnet_lite0-57934424", "efficientnet_lite0-retrained"]
    assert ImageEmbedding.objects.filter(model_version="efficientnet_lite0-retrained").count() == 5
    assert embedding_services.image_embeddings_prune(keep_model_version="efficientnet_lite0-retrained") == 5
    assert set(ImageEmbedding.objects.values_list("model_version", flat=True)) == {"efficientnet_lite0-retrained"}


def test_an_unknown_model_version_fails_the_job_with_the_reason(catalogue):
    job = run_job(model_version="resnet-404")

    assert job.status == JobStatus.FAILED
    assert "no backbone produces model version 'resnet-404'" in job.error


def test_a_duplicate_delivery_does_nothing(embedder, catalogue):
    job = run_job()

    again = embedding_job_execute(job_id=job.id)

    assert again.status == JobStatus.SUCCEEDED and again.done == job.done


def test_category_changes_reach_the_vectors_and_bump_the_generation(embedder, catalogue):
    run_job()
    product = catalogue["good"][0]
    jeans = category("Apparel > Bottomwear > Jeans", exclusive=True)
    generation = EmbeddingSpace.objects.get().generation
    LabelFactory(product=product, category=jeans)
    products_category_refresh(product_ids=[product.id])  # in this test's transaction: no sync ran yet

    changed = embeddings_sync_categories(product_ids=[product.id, catalogue["good"][1].id])

    assert changed == 1
    row = ImageEmbedding.objects.get(product=product)
    assert (row.level2_id, row.level3_id) == (jeans.level2_id, jeans.level3_id)
    assert EmbeddingSpace.objects.get().generation == generation + 1
    assert embeddings_sync_categories(product_ids=None) == 0


def test_refresh_after_import_queues_one_coalesced_job_on_commit(catalogue, django_capture_on_commit_callbacks,
                                                                 sent_tasks):
    sent = sent_tasks
    first, second = catalogue["good"][:2], catalogue["good"][2:4]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        embeddings_refresh_after_import(product_ids=[p.id for p in first])
        embeddings_refresh_after_import(product_ids=[p.id for p in second])
        assert sent == []  # nothing leaves before the import's transaction commits

    job = EmbeddingJob.objects.get()
    assert (job.kind, job.status) == (EmbeddingKind.IMAGE, JobStatus.QUEUED)
    assert sorted(job.product_ids) == sorted(p.id for p in first + second)
    assert len(callbacks) == 1 and sent == [("similarity.tasks.embedding_job_execute_task", {"job_id": job.id})]


def test_reaper_fails_jobs_whose_worker_died(catalogue):
    stale = EmbeddingJob.objects.create(model_version="v", status=JobStatus.RUNNING,
                                        heartbeat_at=timezone.now() - timedelta(hours=1))
    alive = EmbeddingJob.objects.create(model_version="v", status=JobStatus.RUNNING, heartbeat_at=timezone.now())

    assert embedding_jobs_reap() == 1

    stale.refresh_from_db()
    alive.refresh_from_db()
    assert stale.status == JobStatus.FAILED and "heartbeat" in stale.error
    assert alive.status == JobStatus.RUNNING


def test_embed_images_command_prints_counts_and_throughput(embedder, catalogue, capsys):
    call_command("embed_images", "--limit", "3", "--batch-size", "2", verbosity=0)

    out = capsys.readouterr().out
    assert "3 embedded, 0 unchanged, 0 failed of 3 products with a photo" in out
    assert "images/s" in out
    call_command("embed_images", verbosity=0)
    assert "2 embedded, 3 unchanged, 3 failed of 8" in capsys.readouterr().out
    with pytest.raises(CommandError, match="--limit"):
        call_command("embed_images", "--limit", "0")


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_chunks_are_written_on_a_thread_while_the_next_is_embedded(embedder, catalogue,
                                                                                         settings):
    settings.SIMILARITY_JOB_CHUNK_SIZE = 3

    job = run_job()

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert (job.done, job.failed) == (5, 3)
    assert "write_wait_s" in job.timings and job.timings["write_s"] > 0
    assert ImageEmbedding.objects.count() == 5 and EmbeddingFailure.objects.count() == 3


def test_halfvec_text_gives_back_every_float16_exactly():
    scales = 10.0 ** np.arange(-6, 4, 0.5)[:, None]  # tiny to large magnitudes, subnormal halves included
    vectors = (np.random.default_rng(5).standard_normal((20, 1280)) * scales).astype(np.float32)

    parsed = np.array([np.array(text.to_text()[1:-1].split(","), dtype=np.float32)
                       for text in embedding_services.halfvec_texts(vectors)])

    assert np.array_equal(parsed.astype(np.float16), vectors.astype(np.float16))
