"""The taxonomy proposal page: choose a feed, see the proposed tree (htmx), download its CSV, apply it."""

import os
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labelapp.catalogue.models import Category, ImportRun, ImportStatus
from labelapp.common.roles import LABELLER, REVIEWER
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

PAGE = "/taxonomy/propose/"
OPTIONS = {"feed": "source:shop", "depth": "3", "min_products": "2", "exclusive": "leaves", "fold": "other"}
FEED = (b"id,title,category\n1,Tee,Apparel > Tops\n2,Tee 2,Apparel / Tops\n3,Jeans,Apparel > Bottoms\n"
        b"4,Jeans 2,Apparel > Bottoms\n5,Mug,Kitchen\n")


@pytest.fixture
def shop():
    for path in ["Apparel > Tops"] * 3 + ["Apparel > Bottoms"] * 2 + ["Apparel > Hats", "Garden"]:
        ProductFactory(source="shop", category_path=path)


@pytest.fixture
def reviewer(client, make_user):
    client.force_login(make_user("rev", REVIEWER))
    return client


def test_a_labeller_is_refused_and_an_anonymous_user_sent_to_log_in(client, make_user):
    assert client.get(PAGE)["Location"].startswith("/accounts/login/")
    client.force_login(make_user("lab", LABELLER))

    assert client.get(PAGE).status_code == 403
    assert client.get(PAGE + "taxonomy.csv", OPTIONS).status_code == 403
    assert client.post(PAGE + "apply/", {**OPTIONS, "confirmed": "yes"}).status_code == 403
    assert client.post(PAGE + "upload/", {"file": SimpleUploadedFile("feed.csv", FEED)}).status_code == 403
    assert Category.objects.count() == 0


def test_the_page_offers_the_imported_sources(reviewer, shop):
    response = reviewer.get(PAGE)

    assert response.status_code == 200
    assert b'<option value="source:shop">source shop</option>' in response.content
    assert b"Choose an imported source above, or upload a feed." in response.content


def test_the_proposal_is_a_whole_page_or_an_htmx_partial(reviewer, shop):
    page = reviewer.get(PAGE, OPTIONS)
    partial = reviewer.get(PAGE, {**OPTIONS, "min_products": "1"}, HTTP_HX_REQUEST="true")

    assert b"<html" in page.content and b"<html" not in partial.content
    # Hats (1 product) folds into Apparel, too few for an 'Other' leaf; Garden (1) has no parent: dropped.
    assert [node.path for node in page.context["proposal"].nodes] == ["Apparel", "Apparel > Bottoms", "Apparel > Tops"]
    assert b"Apparel &gt; Hats" in page.content  # the fold is listed
    assert partial.context["proposal"].leaves == 4 and b"Hats" in partial.content


def test_invalid_options_are_shown_not_fatal(reviewer, shop):
    response = reviewer.get(PAGE, {**OPTIONS, "min_products": "0", "feed": "source:nobody"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert b"Select a valid choice" in response.content and b"greater than or equal to 1" in response.content
    assert "proposal" not in response.context


def test_the_csv_download_is_the_proposal_import_taxonomy_reads(reviewer, shop):
    response = reviewer.get(PAGE + "taxonomy.csv", OPTIONS)

    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="taxonomy-proposal.csv"' in response["Content-Disposition"]
    assert response.content.decode().splitlines() == [
        "path,exclusive", "Apparel,false", "Apparel > Bottoms,true", "Apparel > Tops,true"]


def test_apply_asks_for_confirmation_then_creates_the_categories_once(reviewer, shop):
    confirm = reviewer.post(PAGE + "apply/", OPTIONS)

    assert confirm.status_code == 200 and Category.objects.count() == 0
    assert b"Apply the proposed taxonomy?" in confirm.content and b'name="confirmed" value="yes"' in confirm.content
    assert confirm.context["new_count"] == 3

    applied = reviewer.post(PAGE + "apply/", {**OPTIONS, "confirmed": "yes"})

    run = applied.context["run"]
    assert run.status == ImportStatus.SUCCEEDED and run.rows_created == 3 and run.created_by.username == "rev"
    assert b"3 categories created" in applied.content and b"Apparel &gt; Tops" in applied.content
    assert set(Category.objects.values_list("full_path", "is_exclusive")) == {
        ("Apparel", False), ("Apparel > Bottoms", True), ("Apparel > Tops", True)}

    again = reviewer.post(PAGE + "apply/", {**OPTIONS, "confirmed": "yes"})

    assert again.context["run"].rows_created == 0 and again.context["new_count"] == 0
    assert Category.objects.count() == 3 and ImportRun.objects.count() == 2


def test_an_uploaded_feed_is_read_and_only_its_counted_paths_kept(reviewer, settings):
    response = reviewer.post(PAGE + "upload/", {"file": SimpleUploadedFile("feed.csv", FEED), "format": ""})

    assert response.status_code == 302
    feed = response["Location"].split("feed=")[1].replace("%3A", ":")
    assert feed.startswith("upload:")
    kept = [path.name for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file()]
    assert kept == [f"{feed[len('upload:'):]}.json"]

    first = reviewer.get(response["Location"])  # the default options: at least 5 products a node
    page = reviewer.get(PAGE, {**OPTIONS, "feed": feed, "min_products": "1"})

    assert b"uploaded: feed.csv" in first.content and first.context["proposal"].products_total == 5
    assert [node.path for node in page.context["proposal"].nodes] == ["Apparel", "Apparel > Bottoms",
                                                                      "Apparel > Tops", "Kitchen"]
    applied = reviewer.post(PAGE + "apply/", {**OPTIONS, "feed": feed, "min_products": "1", "confirmed": "yes"})
    assert applied.context["run"].rows_created == 4


def test_an_upload_deletes_the_counted_paths_of_uploads_older_than_a_week(reviewer, settings):
    folder = Path(settings.MEDIA_ROOT) / "taxonomy-proposals"
    folder.mkdir(parents=True)
    old, recent = folder / f"{'a' * 32}.json", folder / f"{'b' * 32}.json"
    for path, age_days in ((old, 8), (recent, 6)):
        path.write_text("{}")
        os.utime(path, (time.time() - age_days * 86400,) * 2)

    reviewer.post(PAGE + "upload/", {"file": SimpleUploadedFile("feed.csv", FEED)})

    assert not old.exists() and recent.exists()


def test_an_upload_over_the_limit_is_refused_and_nothing_kept(reviewer, settings):
    settings.IMPORT_UPLOAD_MAX_BYTES = 100

    response = reviewer.post(PAGE + "upload/", {"file": SimpleUploadedFile("feed.csv", FEED * 10)})

    assert response.status_code == 413
    assert b"The upload is too large" in response.content
    assert not Path(settings.MEDIA_ROOT).exists() or not any(Path(settings.MEDIA_ROOT).rglob("*.json"))


def test_an_unreadable_upload_is_a_form_error(reviewer):
    response = reviewer.post(PAGE + "upload/", {"file": SimpleUploadedFile("feed.pdf", b"%PDF")})
    no_title = reviewer.post(PAGE + "upload/", {"file": SimpleUploadedFile("feed.csv", b"sku,category\n1,A\n")})

    assert response.status_code == 400 and b"not .pdf" in response.content
    assert no_title.status_code == 400 and b"no title column" in no_title.content


def test_an_unknown_upload_token_is_no_choice(reviewer):
    response = reviewer.get(PAGE, {**OPTIONS, "feed": "upload:" + "0" * 32})

    assert b"Select a valid choice" in response.content


def test_the_category_tree_links_reviewers_to_the_proposal(client, make_user):
    client.force_login(make_user("rev", REVIEWER))
    assert b'href="/taxonomy/propose/"' in client.get("/categories/").content

    client.force_login(make_user("lab", LABELLER))
    assert b'href="/taxonomy/propose/"' not in client.get("/categories/").content
