"""The answer is never an input: labels taken from the feed category drop the inputs that read it."""
from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from classifier.core.config import DEFAULT_CONFIG_PATH, config_load
from classifier.core.estimator import CONFIG_FILE
from classifier.models import TrainRun, TrainStatus
from labelapp.catalogue.models import Label, LabelStrategy, Product
from labelapp.catalogue.services.ground_truth import labels_import_from_feed
from labelapp.common.roles import REVIEWER
from tests.factories import TrainRunFactory

FEED_FIELDS = ["category", "category_path"]  # the seed config's fields that read the feed's category
TRAIN = ["--architecture", "logreg", "--objectives", "exclusive", "--epochs", "2", "--learning-rate", "0.05",
         "--batch-size", "32", "--seed", "3", "--no-promote", "--sync"]


@pytest.fixture
def feed_catalogue(catalogue, settings):
    """The catalogue with each product's feed category (its path and mapped category) set to its class."""
    categories, products = catalogue
    for product, path in products:
        Product.objects.filter(id=product.id).update(category_path=path, feed_category=categories[path])
    settings.CLASSIFIER_FEATURE_CONFIG = DEFAULT_CONFIG_PATH
    return catalogue


def labels_from_the_feed() -> int:
    Label.objects.all().delete()
    return labels_import_from_feed().labelled


def trained_fields(run: TrainRun) -> list[str]:
    return [spec.name for spec in config_load(Path(run.artefact_path) / CONFIG_FILE).fields]


@pytest.mark.django_db(transaction=True)
def test_training_on_labels_from_the_feed_drops_the_feed_category_and_says_so(feed_catalogue):
    imported = labels_from_the_feed()
    out = StringIO()

    call_command("train", *TRAIN, stdout=out, stderr=StringIO())

    run = TrainRun.objects.get()
    assert run.status == TrainStatus.SUCCEEDED, run.error
    assert run.params["dropped_inputs"] == FEED_FIELDS and run.data_counts["feed_labels"] == imported == 240
    warning, = run.params["warnings"]
    assert warning == ("dropped the inputs that read the feed category (category, category_path): 240 of the "
                       "labels were taken from the feed category (strategy 'import', import_ground_truth "
                       "--from-feed), so reading it would be reading the answer")
    assert f"warning: {warning}" in out.getvalue()
    fields = trained_fields(run)
    assert "title" in fields and not set(FEED_FIELDS) & set(fields)


@pytest.mark.django_db(transaction=True)
def test_training_on_human_labels_keeps_the_feed_category(feed_catalogue):
    assert set(Label.objects.values_list("strategy", flat=True)) == {LabelStrategy.RANDOM}
    out = StringIO()

    call_command("train", *TRAIN, stdout=out, stderr=StringIO())

    run = TrainRun.objects.get()
    assert run.status == TrainStatus.SUCCEEDED, run.error
    assert "warnings" not in run.params and run.data_counts["feed_labels"] == 0
    assert "warning:" not in out.getvalue()
    assert set(FEED_FIELDS) <= set(trained_fields(run))


@pytest.mark.django_db(transaction=True)
def test_strict_training_refuses_to_read_the_answer(feed_catalogue):
    labels_from_the_feed()

    with pytest.raises(CommandError, match=r"reads the feed category \(fields category, category_path\)"):
        call_command("train", *TRAIN, "--strict", stdout=StringIO(), stderr=StringIO())

    run = TrainRun.objects.get()
    assert run.status == TrainStatus.FAILED and run.params["strict_inputs"] is True
    assert "leave out --strict to drop them" in run.error


@pytest.mark.django_db
def test_the_run_page_shows_the_warnings(client, make_user):
    run = TrainRunFactory(params={"epochs": 3, "warnings": ["dropped the inputs that read the feed category"]})
    client.force_login(make_user("reviewer", REVIEWER))

    page = client.get(f"/review/runs/{run.id}/").content.decode()

    assert "<h2>Warnings</h2>" in page and "<li>dropped the inputs that read the feed category</li>" in page


def simulate(*argv: str) -> str:
    out = StringIO()
    call_command("simulate_active_learning", "--strategy", "random", "--rounds", "0", "--seed-size", "30",
                 "--batch-size", "10", "--epochs", "3", "--architecture", "logreg", "--oracle", "feed", *argv,
                 stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_the_simulation_takes_a_feature_config_and_keeps_the_oracles_answer_out_of_it(catalogue, tmp_path, settings):
    categories, products = catalogue
    for product, path in products:
        Product.objects.filter(id=product.id).update(category_path=path, feed_category=categories[path])
    with_category = tmp_path / "with-category.toml"
    with_category.write_text(Path(settings.CLASSIFIER_FEATURE_CONFIG).read_text()
                             + '\n[fields.category]\nkind = "categorical"\nrepresentation = "onehot"\n')
    only_category = tmp_path / "only-category.toml"
    only_category.write_text('[fields.category]\nkind = "categorical"\nrepresentation = "onehot"\n')

    default = simulate("--out", str(tmp_path / "a"))
    chosen = simulate("--config", str(with_category), "--out", str(tmp_path / "b"))

    assert "Warning:" not in default  # CLASSIFIER_FEATURE_CONFIG reads title and gender only
    assert ("Warning: dropped the inputs that read the feed category (category): 240 of the oracle's answers "
            "are the feed category (--oracle feed), so reading it would be reading the answer") in chosen
    with pytest.raises(CommandError, match="give the feature config other inputs"):
        simulate("--config", str(only_category))
    with pytest.raises(CommandError, match="leave out --strict"):
        simulate("--config", str(with_category), "--strict")
    with pytest.raises(CommandError, match="no feature config at"):
        simulate("--config", str(tmp_path / "missing.toml"))
