"""`manage.py train`: queue or run in place, report metrics, fail loudly."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from classifier.models import ModelVersion, TrainRun, TrainStatus


@pytest.mark.django_db(transaction=True)
def test_train_sync_prints_metrics_and_promotes(catalogue):
    out = StringIO()
    call_command("train", "--architecture", "logreg", "--objectives", "exclusive,rule", "--epochs", "12",
                 "--learning-rate", "0.05", "--batch-size", "32", "--sync", stdout=out, stderr=StringIO())

    run = TrainRun.objects.get()
    assert run.status == TrainStatus.SUCCEEDED and run.trigger == "command"
    text = out.getvalue()
    assert f"Train run {run.id} succeeded" in text
    assert "hand-labelled ground truth: accuracy" in text and "rule micro-F1" in text
    assert ModelVersion.objects.get(is_active=True).train_run == run


@pytest.mark.django_db
def test_train_queues_by_default(catalogue, django_capture_on_commit_callbacks, sent_tasks):
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("train", "--objectives", "rule", stdout=out)
    run = TrainRun.objects.get()
    assert sent_tasks == [("classifier.tasks.train_run_execute_task", {"train_run_id": run.id})] and run.status == TrainStatus.QUEUED and run.objectives == ["rule"]
    assert f"Queued train run {run.id}" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("argv, message", [
    (["--objectives", "exclusive,vibes"], "objectives"),
    (["--architecture", "transformer"], "architecture"),
    (["--loss-weights", "not json"], "--loss-weights"),
    (["--config", "/nonexistent.toml"], "no feature config"),
])
def test_train_rejects_bad_options(catalogue, argv, message):
    with pytest.raises(CommandError, match=message):
        call_command("train", *argv, stdout=StringIO())
    assert not TrainRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_train_sync_failure_is_a_command_error(catalogue):
    from labelapp.catalogue.models import Label

    Label.objects.all().delete()
    with pytest.raises(CommandError, match="needs human labels"):
        call_command("train", "--sync", "--no-weak-targets", stdout=StringIO(), stderr=StringIO())
    assert TrainRun.objects.get().status == TrainStatus.FAILED
