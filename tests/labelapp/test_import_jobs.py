"""Imports submitted over the API or the import page: stored, queued on commit, progress, reaper."""
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from labelapp.catalogue.models import ImportRun, ImportStatus, Product
from labelapp.catalogue.services.import_jobs import import_progress_recorder, import_runs_reap
from labelapp.catalogue.services.imports.execute import import_run_execute
from labelapp.common.roles import LABELLER, REVIEWER

pytestmark = pytest.mark.django_db

FEED = b"id,title,category\nA1,Red Dress,Women > Dresses\nA2,,Women > Dresses\n"


def test_reviewer_uploads_a_feed_and_the_run_is_queued_after_commit(api_client, make_user,
                                                                  django_capture_on_commit_callbacks):
    api_client.force_authenticate(make_user("rev", REVIEWER))

    with django_capture_on_commit_callbacks() as callbacks:
        response = api_client.post("/api/v1/imports/", {"kind": "products", "source": "shop",
                                                        "file": SimpleUploadedFile("feed.csv", FEED)},
                                   format="multipart")

    assert response.status_code == 202
    run = ImportRun.objects.get(pk=response.json()["id"])
    assert run.status == ImportStatus.QUEUED and Path(run.file_name).read_bytes() == FEED
    assert len(callbacks) == 1  # the task is sent only once the run is committed
    # What the worker will do with it:
    import_run_execute(import_run_id=run.id)
    run.refresh_from_db()
    assert (run.status, run.rows_created, run.rows_rejected) == ("succeeded", 1, 1)
    detail = api_client.get(f"/api/v1/imports/{run.id}/", {"outcome": "rejected"}).json()
    assert detail["issues"]["results"][0]["line"] == 3
    assert Product.objects.get().source == "shop"


@pytest.mark.parametrize("payload, field, message", [
    ({"kind": "products", "file": ("feed.exe", b"x")}, "file", "reads"),
    ({"kind": "nonsense", "file": ("feed.csv", FEED)}, "kind", "valid choice"),
    ({"kind": "taxonomy", "file": ("t.txt", b"1 - A"), "mapping": ("m.toml", b"source = \"x\"\n")},
     "mapping", "product imports"),
    ({"kind": "products", "file": ("feed.csv", FEED), "mapping": ("m.toml", b"[fields]\nnope = 1\n")},
     "mapping", "invalid mapping"),
])
def test_bad_uploads_are_400_with_a_message_and_create_nothing(api_client, make_user, payload, field, message):
    api_client.force_authenticate(make_user("rev", REVIEWER))
    data = {key: SimpleUploadedFile(*value) if isinstance(value, tuple) else value for key, value in payload.items()}

    response = api_client.post("/api/v1/imports/", data, format="multipart")

    assert response.status_code == 400
    assert message in str(response.json()[field])
    assert ImportRun.objects.count() == 0


def test_labellers_cannot_import(api_client, make_user):
    api_client.force_authenticate(make_user("lab", LABELLER))

    response = api_client.post("/api/v1/imports/", {"kind": "products", "file": SimpleUploadedFile("f.csv", FEED)},
                               format="multipart")

    assert response.status_code == 403


def test_import_page_upload_redirects_to_a_report_that_polls_until_done(client, make_user,
                                                                         django_capture_on_commit_callbacks):
    client.force_login(make_user("rev", REVIEWER))

    with django_capture_on_commit_callbacks():
        response = client.post("/imports/", {"kind": "products", "source": "shop",
                                             "file": SimpleUploadedFile("feed.csv", FEED)})
    run = ImportRun.objects.get()
    polling = client.get(f"/imports/{run.id}/", {"fragment": "status"}, HTTP_HX_REQUEST="true")
    import_run_execute(import_run_id=run.id)
    finished = client.get(f"/imports/{run.id}/", {"fragment": "status"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 302 and response["Location"] == f"/imports/{run.id}/"
    assert polling.status_code == 200 and b'hx-trigger="every 1s"' in polling.content
    assert finished.status_code == 286 and finished["HX-Refresh"] == "true"
    assert b"succeeded" in finished.content


def test_import_page_shows_form_errors(client, make_user):
    client.force_login(make_user("rev", REVIEWER))

    response = client.post("/imports/", {"kind": "rules", "file": SimpleUploadedFile("rules.txt", b"x")})

    assert response.status_code == 400 and b"rules import reads" in response.content


def test_progress_recorder_throttles_writes():
    run = ImportRun.objects.create(kind="products", file_name="f.csv", status=ImportStatus.RUNNING)
    record = import_progress_recorder(import_run_id=run.id, every_s=3600)

    record(10, 100)
    record(50, 100)   # within the interval: not written
    run.refresh_from_db()
    assert (run.bytes_done, run.bytes_total, run.progress_percent) == (10, 100, 10)
    record(100, 100)  # the end is always written
    run.refresh_from_db()
    assert run.bytes_done == 100


def test_reaper_fails_only_runs_whose_worker_died():
    old = ImportRun.objects.create(kind="products", file_name="a.csv", status=ImportStatus.RUNNING,
                                   started_at=timezone.now() - timedelta(hours=7))
    fresh = ImportRun.objects.create(kind="products", file_name="b.csv", status=ImportStatus.RUNNING,
                                     started_at=timezone.now())

    assert import_runs_reap(stale_after=timedelta(hours=6)) == 1
    old.refresh_from_db(); fresh.refresh_from_db()
    assert old.status == ImportStatus.FAILED and "worker" in old.error
    assert fresh.status == ImportStatus.RUNNING
