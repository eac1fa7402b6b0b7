"""Import uploads (security review #11, D8): a size limit checked before the file is kept, and answers that
name files without the server's paths."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from labelapp.catalogue.models import ImportRun
from labelapp.catalogue.services.imports.execute import import_run_execute
from labelapp.common.roles import REVIEWER
from tests.factories import TrainRunFactory

pytestmark = pytest.mark.django_db

FEED = b"id,title\nA1,Red Dress\n"
LIMIT = 1000
FORM_OVERHEAD = 1024 * 1024  # what the limit allows on top of the files before refusing on Content-Length


@pytest.fixture
def upload_tmp(settings, tmp_path) -> Path:
    """A small upload limit, and uploads spooled to a temporary folder of the test's (to see what is left)."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.IMPORT_UPLOAD_MAX_BYTES = LIMIT
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100  # anything bigger is written to a temporary file as it arrives
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


def files_under(*folders: Path) -> list[Path]:
    return [path for folder in folders if folder.exists() for path in folder.rglob("*") if path.is_file()]


def feed_of(size: int) -> SimpleUploadedFile:
    return SimpleUploadedFile("feed.csv", FEED + b"x" * (size - len(FEED)))


@pytest.mark.parametrize("size", [
    LIMIT + 1,  # refused while streaming: the request's Content-Length leaves room for form fields
    LIMIT + FORM_OVERHEAD + 1,  # refused on the Content-Length, before a byte is read
])
def test_the_api_answers_413_for_an_upload_over_the_limit_and_keeps_nothing(api_client, make_user, settings,
                                                                             upload_tmp, size):
    api_client.force_authenticate(make_user("rev", REVIEWER))

    response = api_client.post("/api/v1/imports/", {"kind": "products", "file": feed_of(size)}, format="multipart")

    assert response.status_code == 413
    assert response.json() == {"detail": "The upload is too large: files up to 1000 bytes are accepted here. "
                                         "Import a bigger file on the server with manage.py import_products."}
    assert ImportRun.objects.count() == 0
    assert files_under(Path(settings.MEDIA_ROOT), upload_tmp) == []


def test_an_upload_at_the_limit_is_accepted(api_client, make_user, upload_tmp):
    api_client.force_authenticate(make_user("rev", REVIEWER))

    response = api_client.post("/api/v1/imports/", {"kind": "products", "file": feed_of(LIMIT)}, format="multipart")

    assert response.status_code == 202


def test_the_import_page_shows_a_form_error_for_an_upload_over_the_limit(client, make_user, settings, upload_tmp):
    client.force_login(make_user("rev", REVIEWER))

    response = client.post("/imports/", {"kind": "products", "file": feed_of(5000)})

    assert response.status_code == 413
    assert b"The upload is too large: files up to 1000 bytes are accepted here." in response.content
    assert b'name="file"' in response.content  # the form is there to try again
    assert ImportRun.objects.count() == 0
    assert files_under(Path(settings.MEDIA_ROOT), upload_tmp) == []


def test_the_import_page_still_checks_csrf(make_user, upload_tmp):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("rev", REVIEWER))

    response = client.post("/imports/", {"kind": "products", "file": feed_of(100)})

    assert response.status_code == 403
    assert ImportRun.objects.count() == 0


def test_import_answers_name_the_file_never_a_server_path(api_client, make_user, settings, tmp_path):
    api_client.force_authenticate(make_user("rev", REVIEWER))
    posted = api_client.post("/api/v1/imports/", {"kind": "products", "file": SimpleUploadedFile("feed.csv", FEED)},
                             format="multipart")
    run = ImportRun.objects.get()
    Path(run.file_name).unlink()  # the worker finds it gone: the run fails, with an error naming the file
    import_run_execute(import_run_id=run.id)

    listed = api_client.get("/api/v1/imports/")
    detail = api_client.get(f"/api/v1/imports/{run.id}/")

    assert posted.status_code == 202 and posted.json()["file_name"] == "feed.csv"
    assert detail.json()["error"].startswith("cannot open feed.csv")
    for response in (posted, listed, detail):
        assert str(tmp_path) not in response.content.decode()


def test_a_bad_mapping_is_reported_without_its_server_path(api_client, make_user, tmp_path):
    api_client.force_authenticate(make_user("rev", REVIEWER))

    response = api_client.post("/api/v1/imports/", {
        "kind": "products", "file": SimpleUploadedFile("feed.csv", FEED),
        "mapping": SimpleUploadedFile("shop.toml", b"[fields\n")}, format="multipart")

    assert response.status_code == 400
    assert "mapping shop.toml is not valid TOML" in str(response.json()["mapping"])
    assert str(tmp_path) not in response.content.decode()


def test_run_errors_keep_no_absolute_path(api_client, make_user, settings):
    api_client.force_authenticate(make_user("rev", REVIEWER))
    run = ImportRun.objects.create(kind="products", file_name="/srv/feeds/2024/feed.csv", status="failed",
                                   error="images folder /srv/feeds/images does not exist")
    train = TrainRunFactory(status="failed", error=f'OSError: disk full\n  File "{settings.BASE_DIR}/classifier/'
                                                   f'services/pipeline.py", line 9\n  File "/usr/lib/python3/x.py"')

    imports = api_client.get(f"/api/v1/imports/{run.id}/").json()
    training = api_client.get(f"/api/v1/train-runs/{train.id}/").json()

    assert (imports["file_name"], imports["error"]) == ("feed.csv", "images folder …/images does not exist")
    assert training["error"] == 'OSError: disk full\n  File "classifier/services/pipeline.py", line 9\n  File "…/x.py"'
