"""Onboarding a catalogue: the uploaded feed's preview and mapping, each step's service, the state, the views."""
from __future__ import annotations

import tomllib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from classifier.models import TrainRun
from labelapp.catalogue.models import ImportKind, ImportRun, ImportStatus, LegacyRule, RuleLabel
from labelapp.catalogue.services.imports.mapping import ImportMapping
from labelapp.common.roles import LABELLER, REVIEWER
from labelapp.workflow.models import LabellingRound
from labelapp.workflow.onboarding_selectors import CURRENT, DONE, FAILED, RUNNING, TODO, onboarding_state
from labelapp.workflow.services.onboarding import (
    MappingChoice,
    feed_columns_read,
    feed_preview_build,
    mapping_choice_default,
    onboarding_import_submit,
    onboarding_round_open,
    onboarding_rules_bootstrap,
    onboarding_train_start,
    onboarding_upload_path,
    onboarding_upload_store,
)
from tests.factories import ModelVersionFactory, ProductFactory, QueueItemFactory, TrainRunFactory, category

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
STYLES = ("id,gender,masterCategory,subCategory,articleType,productDisplayName\n"
          "1,Men,Apparel,Topwear,Shirts,Turtle Check Men Navy Blue Shirt\n"
          "2,Men,Apparel,Bottomwear,Jeans,Peter England Men Party Blue Jeans\n"
          "3,Women,Apparel,Topwear,Shirts,Women Red Shirt\n"
          "4,Women,Footwear,Shoes,Heels,\n")


def _upload(text: str = STYLES, name: str = "styles.csv") -> str:
    return onboarding_upload_store(uploaded_file=SimpleUploadedFile(name, text.encode()))


@pytest.fixture
def reviewer(client, make_user):
    user = make_user("rev", REVIEWER)
    client.force_login(user)
    return user


# --- services ------------------------------------------------------------------------------------------------------


def test_an_upload_is_kept_under_a_token_and_a_file_an_import_cannot_read_is_refused():
    token = _upload()

    assert onboarding_upload_path(token=token).name == "styles.csv"
    assert onboarding_upload_path(token="../etc") is None
    with pytest.raises(Exception, match="a feed is one of"):
        onboarding_upload_store(uploaded_file=SimpleUploadedFile("feed.xlsx", b"x"))


def test_the_defaults_are_the_importers_own_column_names_and_the_choice_is_a_valid_mapping_file():
    columns = ["ID", "productDisplayName", "Gender", "masterCategory", "articleType"]

    choice = mapping_choice_default(columns=columns, source="myntra")

    assert choice.fields["external_id"] == "ID" and choice.fields["title"] == "productDisplayName"
    assert choice.fields["gender"] == "Gender" and choice.fields["brand"] == "" and choice.category_path == ""
    levels = MappingChoice(fields=choice.fields, category_levels=("masterCategory", "", "articleType"),
                           source="my \"shop\"")
    mapping = ImportMapping.from_dict(tomllib.loads(levels.toml_text()))
    assert mapping.category_columns == ("masterCategory", "articleType") and mapping.source == 'my "shop"'
    assert mapping.fields["title"] == ("productDisplayName",) and "brand" not in mapping.fields


def test_the_preview_reads_the_feed_as_the_import_would_and_counts_paths_against_the_taxonomy():
    category("Apparel > Topwear > Shirts")
    path = onboarding_upload_path(token=_upload())
    columns = feed_columns_read(path=path)
    default = mapping_choice_default(columns=columns, source="styles")

    before = feed_preview_build(path=path, choice=default)
    after = feed_preview_build(path=path, choice=MappingChoice(
        fields=default.fields, category_levels=("masterCategory", "subCategory", "articleType"), source="styles"))

    assert columns == ["id", "gender", "masterCategory", "subCategory", "articleType", "productDisplayName"]
    assert before.paths_distinct == 0 and before.rows_read == 4 and before.rows_rejected == 1
    assert [row["title"] for row in after.rows][:2] == ["Turtle Check Men Navy Blue Shirt",
                                                        "Peter England Men Party Blue Jeans"]
    assert after.rows[0]["category_path"] == "Apparel > Topwear > Shirts"
    assert after.paths_distinct == 2 and after.top_paths[0] == ("Apparel > Topwear > Shirts", 2)
    assert (after.paths_matching, after.products_matching) == (1, 2)
    assert "missing title" in after.rejected[0][1]


def test_a_mapping_without_a_title_column_says_the_import_would_fail():
    path = onboarding_upload_path(token=_upload())

    preview = feed_preview_build(path=path, choice=MappingChoice(fields={"external_id": "id"}))

    assert "title" in preview.error and not preview.rows


def test_importing_queues_a_product_import_with_the_chosen_mapping_and_drops_the_upload(
        make_user, sent_tasks, django_capture_on_commit_callbacks):
    token = _upload()
    choice = MappingChoice(fields={"external_id": "id", "title": "productDisplayName"},
                           category_levels=("masterCategory", "articleType"), source="myntra")

    with django_capture_on_commit_callbacks(execute=True):
        run = onboarding_import_submit(token=token, choice=choice, user=make_user("rev", REVIEWER))

    assert (run.kind, run.source, run.status) == (ImportKind.PRODUCTS, "myntra", ImportStatus.QUEUED)
    assert run.options["mapping"]["category"] == {"columns": ["masterCategory", "articleType"]}
    assert sent_tasks == [("labelapp.catalogue.tasks.import_run_execute_task", {"import_run_id": run.id})]
    assert onboarding_upload_path(token=token) is None


def test_rules_are_bootstrapped_from_the_category_names_and_applied():
    category("Apparel > Shirts", exclusive=True)
    ProductFactory(title="Navy Blue Shirt", source="myntra")
    ProductFactory(title="Blue Jeans", source="myntra")

    result = onboarding_rules_bootstrap(source="myntra")

    assert result.rules_written == 1 and LegacyRule.objects.count() == 1
    assert result.rule_labels_created == 1 and RuleLabel.objects.get().product.title == "Navy Blue Shirt"


def test_the_first_model_and_round_have_the_onboarding_defaults(make_user, sent_tasks):
    user = make_user("rev", REVIEWER)

    run = onboarding_train_start(user=user, epochs=3)
    round = onboarding_round_open(user=user, batch_size=5, train_run=run)

    assert (run.architecture, run.objectives, run.params) == ("logreg", ["exclusive", "rule"],
                                                              {"epochs": 3, "weak_targets": True})
    assert run.trigger == "onboarding"
    assert round.strategy_mix == {"margin": 0.8, "random": 0.2} and round.batch_size == 5
    assert round.architecture == "logreg" and round.options == {"training": {"epochs": 3}}


# --- the state ---------------------------------------------------------------------------------------------------


def test_the_state_follows_the_data_step_by_step():
    def states(source="shop"):
        return [step.state for step in onboarding_state(source=source).steps]

    assert states() == [CURRENT, TODO, TODO, TODO, TODO, TODO]
    run = ImportRun.objects.create(kind=ImportKind.PRODUCTS, source="shop", file_name="f.csv",
                                   status=ImportStatus.RUNNING)
    assert states()[:3] == [DONE, RUNNING, TODO]
    ImportRun.objects.filter(pk=run.pk).update(status=ImportStatus.SUCCEEDED)
    assert states()[:3] == [DONE, DONE, CURRENT]
    LegacyRule.objects.create(name="r", category=category("Apparel > Shirts", exclusive=True),
                              conditions=[{"field": "title", "op": "contains_word", "value": "shirt"}])
    train = TrainRunFactory(status="running", stage="train")
    assert states()[2:] == [DONE, DONE, RUNNING, TODO]
    TrainRun.objects.filter(pk=train.pk).update(status="failed")
    assert states()[4] == FAILED
    ModelVersionFactory(train_run=TrainRunFactory(), is_active=True)
    TrainRun.objects.filter(pk=train.pk).delete()
    assert states()[4:] == [DONE, CURRENT]
    item = QueueItemFactory(round__number=1)
    assert states()[5] == DONE and onboarding_state(source="shop").round == item.round


# --- the views -----------------------------------------------------------------------------------------------------


def test_labellers_are_refused_and_reviewers_see_the_steps(client, make_user):
    client.force_login(make_user("lab", LABELLER))
    assert client.get("/onboarding/").status_code == 403
    assert client.post("/onboarding/rules/", {"source": "x"}).status_code == 403

    client.force_login(make_user("rev", REVIEWER))
    html = client.get("/onboarding/").content.decode()
    assert "Onboarding a new catalogue" in html and 'id="round"' in html and "Upload and preview" in html


def test_an_upload_redirects_to_its_preview_and_a_changed_mapping_renders_the_preview_alone(client, reviewer):
    response = client.post("/onboarding/upload/", {"file": SimpleUploadedFile("styles.csv", STYLES.encode())})
    assert response.status_code == 302
    url = response["Location"]
    token = url.split("upload=")[1].split("#")[0]

    page = client.get(url).content.decode()
    assert "Mapping of styles.csv" in page and 'value="productDisplayName" selected' in page
    assert "Turtle Check Men Navy Blue Shirt" in page

    partial = client.get("/onboarding/", {"upload": token, "source": "styles", "field_external_id": "id",
                                          "field_title": "productDisplayName", "category_level_1": "masterCategory",
                                          "category_level_2": "articleType", "fragment": "preview"}, **HTMX)
    text = partial.content.decode()
    assert partial.status_code == 200 and text.startswith('<div id="preview"') and "<html" not in text
    assert "Apparel &gt; Shirts" in text


def test_import_posts_the_mapping_and_lands_on_the_import_step(client, reviewer, sent_tasks,
                                                                django_capture_on_commit_callbacks):
    token = _upload()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/onboarding/import/", {"upload": token, "source": "myntra", "field_external_id": "id",
                                                       "field_title": "productDisplayName"})

    run = ImportRun.objects.get()
    assert response.status_code == 302 and response["Location"] == "/onboarding/?source=myntra#import"
    assert run.source == "myntra" and run.options["mapping"]["fields"]["title"] == ["productDisplayName"]


def test_the_no_javascript_preview_comes_back_as_a_page_without_the_csrf_token_in_its_address(client, reviewer):
    token = _upload()

    response = client.post("/onboarding/import/", {"upload": token, "source": "myntra", "field_external_id": "id",
                                                   "field_title": "productDisplayName", "action": "preview",
                                                   "csrfmiddlewaretoken": "secret-token-value"})

    assert response.status_code == 302 and "secret-token-value" not in response["Location"]
    assert "field_title=productDisplayName" in response["Location"] and "action=" not in response["Location"]
    assert not ImportRun.objects.exists()
    assert "Mapping of" in client.get(response["Location"]).content.decode()


def test_progress_polls_until_the_job_is_done_then_stops_and_reloads(client, reviewer):
    run = ImportRun.objects.create(kind=ImportKind.PRODUCTS, source="shop", file_name="f.csv",
                                   status=ImportStatus.RUNNING, bytes_done=50, bytes_total=100)

    running = client.get("/onboarding/", {"source": "shop", "fragment": "import"}, **HTMX)
    assert running.status_code == 200 and 'hx-trigger="every 1s"' in running.content.decode()
    assert "50%" in running.content.decode()

    ImportRun.objects.filter(pk=run.pk).update(status=ImportStatus.SUCCEEDED, rows_created=7)
    done = client.get("/onboarding/", {"source": "shop", "fragment": "import"}, **HTMX)
    assert done.status_code == 286 and done["HX-Refresh"] == "true" and "hx-trigger" not in done.content.decode()


def test_the_step_buttons_bootstrap_rules_train_and_open_a_round(client, reviewer, sent_tasks):
    category("Apparel > Shirts", exclusive=True)
    ProductFactory(title="Navy Blue Shirt", source="shop")

    client.post("/onboarding/rules/", {"source": "shop"})
    client.post("/onboarding/train/", {"source": "shop", "architecture": "logreg", "epochs": "2",
                                       "weak_targets": "on"})
    response = client.post("/onboarding/round/", {"source": "shop", "batch_size": "5"})

    assert LegacyRule.objects.count() == 1 and RuleLabel.objects.count() == 1
    assert TrainRun.objects.get().params == {"epochs": 2, "weak_targets": True}
    assert LabellingRound.objects.get().batch_size == 5 and response["Location"] == "/onboarding/?source=shop#round"


def test_a_mapping_the_import_would_refuse_comes_back_to_the_form_and_nothing_is_queued(client, reviewer):
    token = _upload()

    response = client.post("/onboarding/import/", {"upload": token, "source": "myntra", "field_external_id": "id"},
                           follow=True)

    html = response.content.decode()
    assert not ImportRun.objects.exists() and onboarding_upload_path(token=token) is not None
    assert "must name the title column" in html and "Importing with this mapping would fail" in html


def test_an_upload_over_the_limit_is_refused_and_nothing_is_kept(client, reviewer, settings):
    settings.IMPORT_UPLOAD_MAX_BYTES = 10

    response = client.post("/onboarding/upload/", {"file": SimpleUploadedFile("styles.csv", STYLES.encode() * 6000)},
                           follow=True)

    assert "The upload is too large" in response.content.decode()
    assert not (settings.MEDIA_ROOT / "onboarding").exists() or not any((settings.MEDIA_ROOT / "onboarding").iterdir())
