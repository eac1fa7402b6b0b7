"""The reviewers' evaluation pages: neighbours per scope and modality, judgements, precision, job progress."""
from __future__ import annotations

import numpy as np
import pytest

from labelapp.catalogue.models import Label
from labelapp.common.roles import API_CLIENT, LABELLER, REVIEWER
from similarity.models import EmbeddingJob, EmbeddingKind, ImageEmbedding, JobStatus, SimilarityJudgement
from similarity.selectors.evaluation import judgement_precision_by_category
from similarity.selectors.similar import product_similar_list
from similarity.services.evaluation import judgement_record, precision_same_category_compute
from similarity.services.spaces import embedding_space_ensure
from tests.factories import ProductFactory, category

pytestmark = pytest.mark.django_db

VERSION = "efficientnet_lite0-57934424"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Users are made per test: PBKDF2's deliberate slowness would dominate these tests' time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def catalogue():
    """Shirts cluster around one direction, tees around another: image neighbours share the level-3 category."""
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    tees = category("Apparel > Topwear > Tshirts", exclusive=True)
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((2, 1280)).astype(np.float32)
    products, vectors = [], []
    for index in range(30):
        leaf = shirts if index % 2 == 0 else tees
        products.append(ProductFactory(title=f"{leaf.name} {index}", category=leaf, level2=leaf.level2,
                                       level3=leaf.level3, image=f"products/test/{index}.jpg"))
        vector = centres[index % 2] + 0.3 * rng.standard_normal(1280).astype(np.float32)
        vectors.append(vector / np.linalg.norm(vector))
    embedding_space_ensure(model_version=VERSION, kind=EmbeddingKind.IMAGE, dim=1280)
    ImageEmbedding.objects.bulk_create([
        ImageEmbedding(product=p, model_version=VERSION, embedding=v, fingerprint="t", level2_id=p.level2_id,
                       level3_id=p.level3_id) for p, v in zip(products, vectors)
    ])
    return {"products": products, "shirts": shirts, "tees": tees}


@pytest.fixture
def reviewer(client, make_user):
    user = make_user("rev", REVIEWER)
    client.force_login(user)
    return user


@pytest.mark.parametrize("path", ["/similarity/", "/similarity/precision/", "/similarity/jobs/",
                                  "/similarity/random/"])
@pytest.mark.parametrize("role", [LABELLER, API_CLIENT])
def test_pages_are_for_reviewers_only(client, make_user, catalogue, path, role):
    client.force_login(make_user("someone", role))

    assert client.get(path).status_code == 403


def test_anonymous_users_are_sent_to_login(client):
    assert client.get("/similarity/")["Location"].startswith("/accounts/login/")


def test_search_is_a_page_or_an_htmx_partial(client, reviewer, catalogue):
    page = client.get("/similarity/", {"q": "Tshirts 1"})
    partial = client.get("/similarity/", {"q": "Tshirts 1"}, HTTP_HX_REQUEST="true")

    assert b"<html" in page.content and b"Tshirts 11" in page.content and b"Shirts 10" not in page.content
    assert b"<html" not in partial.content and b"Tshirts 13" in partial.content


def test_random_draws_an_embedded_product(client, reviewer, catalogue):
    response = client.get("/similarity/random/", {"scope": "level2"})

    assert response.status_code == 302
    assert response["Location"].startswith("/similarity/products/") and "scope=level2" in response["Location"]


def test_neighbour_grid_per_scope_and_modality(client, reviewer, catalogue):
    query = catalogue["products"][0]

    page = client.get(f"/similarity/products/{query.id}/")
    partial = client.get(f"/similarity/products/{query.id}/", {"scope": "global", "modality": "image"},
                         HTTP_HX_REQUEST="true")
    text = client.get(f"/similarity/products/{query.id}/", {"modality": "text"}, HTTP_HX_REQUEST="true")

    assert page.status_code == 200 and b"<html" in page.content
    assert page.content.count(b'class="product-card neighbour') == 10
    assert b"level3 \xc2\xb7 hybrid" in page.content  # every scope x modality tab
    assert b"<html" not in partial.content and partial.content.count(b'name="verdict" value="similar"') == 10
    assert b"No text model has been built yet" in text.content


def test_judging_a_neighbour_is_idempotent_and_can_change(client, reviewer, catalogue):
    query = catalogue["products"][0]
    neighbour = product_similar_list(product=query, k=10, scope="level3").neighbours[0].product
    data = {"query": query.id, "neighbour": neighbour.id, "scope": "level3", "modality": "image",
            "model_version": VERSION, "rank": 1, "score": "0.91", "verdict": "similar"}

    first = client.post("/similarity/judgements/", data, HTTP_HX_REQUEST="true")
    client.post("/similarity/judgements/", data, HTTP_HX_REQUEST="true")

    assert first.status_code == 200 and b"is-similar" in first.content and b"<html" not in first.content
    assert SimilarityJudgement.objects.count() == 1
    client.post("/similarity/judgements/", {**data, "verdict": "not_similar"})
    judgement = SimilarityJudgement.objects.get()
    assert (judgement.is_similar, judgement.reviewer, judgement.rank) == (False, reviewer, 1)
    page = client.get(f"/similarity/products/{query.id}/", {"scope": "level3"})
    assert b"is-not-similar" in page.content


@pytest.mark.parametrize("change", [{"verdict": "maybe"}, {"scope": "galaxy"}, {"modality": "smell"},
                                    {"neighbour": "self"}, {"model_version": ""}, {"model_version": "v" * 101}])
def test_bad_judgements_are_refused(client, reviewer, catalogue, change):
    query, neighbour = catalogue["products"][0], catalogue["products"][2]
    data = {"query": query.id, "neighbour": neighbour.id, "scope": "level3", "modality": "image",
            "model_version": VERSION, "rank": 1, "verdict": "similar", **change}
    if data["neighbour"] == "self":
        data["neighbour"] = query.id

    response = client.post("/similarity/judgements/", data)

    assert response.status_code == 400
    assert not SimilarityJudgement.objects.exists()


def test_unknown_products_are_404_and_a_bad_rank_falls_back(client, reviewer, catalogue):
    query, neighbour = catalogue["products"][0], catalogue["products"][2]
    data = {"query": query.id, "neighbour": neighbour.id, "scope": "level3", "modality": "image",
            "model_version": VERSION, "verdict": "similar"}

    assert client.post("/similarity/judgements/", {**data, "query": "nope"}).status_code == 404
    assert client.post("/similarity/judgements/", {**data, "rank": "x"}).status_code == 302
    assert SimilarityJudgement.objects.get().rank == 10


def test_precision_per_category_from_judgements(reviewer, make_user, catalogue):
    shirts = catalogue["products"][0::2]
    tees = catalogue["products"][1::2]
    other = make_user("rev2", REVIEWER)
    for rank, (neighbour, similar) in enumerate([(shirts[1], True), (shirts[2], True), (tees[0], False)], 1):
        judgement_record(query=shirts[0], neighbour=neighbour, scope="global", modality="image",
                         model_version=VERSION, rank=rank, is_similar=similar, reviewer=reviewer)
    judgement_record(query=shirts[0], neighbour=shirts[1], scope="global", modality="image", model_version=VERSION,
                     rank=1, is_similar=False, reviewer=other)
    judgement_record(query=tees[0], neighbour=tees[1], scope="global", modality="image", model_version=VERSION,
                     rank=12, is_similar=True, reviewer=reviewer)  # beyond k=10: not counted

    rows = judgement_precision_by_category(model_version=VERSION, modality="image", scope="global", k=10)

    assert [(row.name, row.judged, row.similar) for row in rows] == [("Shirts", 4, 2)]
    assert rows[0].precision == pytest.approx(0.5)


def test_precision_page_charts_judgements_and_loads_the_automatic_figure(client, reviewer, catalogue):
    shirts = catalogue["products"][0::2]
    judgement_record(query=shirts[0], neighbour=shirts[1], scope="level3", modality="image",
                     model_version=VERSION, rank=1, is_similar=True, reviewer=reviewer)

    page = client.get("/similarity/precision/")
    auto = client.get("/similarity/precision/auto/", {"scope": "global", "sample": 20}, HTTP_HX_REQUEST="true")

    assert page.status_code == 200 and b"<svg" in page.content and b"Shirts" in page.content
    assert b'hx-get="/similarity/precision/auto/?modality=image&amp;scope=level2"' in page.content
    assert auto.status_code == 200 and b"<svg" in auto.content
    assert b"products with a level-3 category" in auto.content


def test_automatic_precision_counts_same_level3_neighbours(catalogue, make_user):
    report = precision_same_category_compute(scope="global", sample_size=30, k=10)

    assert report.population == "categorised" and report.queries == 30
    assert report.precision == pytest.approx(1.0)  # the two clusters are far apart
    assert {row.full_path for row in report.per_category} == {"Apparel > Topwear > Shirts",
                                                              "Apparel > Topwear > Tshirts"}

    labelled = catalogue["products"][:4]
    for product in labelled:
        Label.objects.create(product=product, category=product.category)
        product.category_source = "label"
        product.save()
    report = precision_same_category_compute(scope="global", sample_size=30, k=10)
    assert report.population == "labelled" and report.queries == 4


def test_job_progress_polls_until_the_job_ends(client, reviewer):
    job = EmbeddingJob.objects.create(model_version=VERSION, status=JobStatus.RUNNING, total=10, done=4)

    running = client.get(f"/similarity/jobs/{job.id}/progress/", HTTP_HX_REQUEST="true")
    EmbeddingJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, done=10)
    finished = client.get(f"/similarity/jobs/{job.id}/progress/", HTTP_HX_REQUEST="true")
    listing = client.get("/similarity/jobs/")

    assert running.status_code == 200 and b'hx-trigger="every 2s"' in running.content
    assert b"4 / 10" in running.content
    assert finished.status_code == 286 and b"every 2s" not in finished.content  # htmx: stop polling
    assert listing.status_code == 200 and f"#{job.id}".encode() in listing.content
    assert b"<html" in client.get(f"/similarity/jobs/{job.id}/progress/").content  # the href beside hx-get


def test_admin_lists_jobs_failures_and_judgements(client, make_user, catalogue):
    admin = make_user("boss", staff=True)
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)

    for path in ("embeddingjob", "embeddingfailure", "embeddingspace", "imageembedding", "similarityjudgement"):
        assert client.get(f"/admin/similarity/{path}/").status_code == 200, path


def test_only_staff_may_start_jobs_from_the_page(client, make_user, reviewer, django_capture_on_commit_callbacks,
                                                 monkeypatch):
    monkeypatch.setattr("labelapp.common.dispatch._publish", lambda message: None)
    assert client.post("/similarity/jobs/start/", {"kind": "image"}).status_code == 403

    client.force_login(make_user("boss", staff=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/similarity/jobs/start/", {"kind": "image", "force": "1"})

    assert response.status_code == 302
    job = EmbeddingJob.objects.get()
    assert job.force and job.kind == "image" and job.product_ids is None
