"""Reviewers' round pages: list, open a round with a form, close early, live progress that stops polling."""
from __future__ import annotations

from unittest import mock

import pytest

from labelapp.common.roles import LABELLER, REVIEWER
from labelapp.workflow.models import LabellingRound, RoundStatus
from tests.factories import LabellingRoundFactory, TrainRunFactory, labelling_round_with_items

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def reviewer(client, make_user):
    user = make_user("rev", REVIEWER)
    client.force_login(user)
    return user


def test_the_list_shows_rounds_with_their_setting_and_progress(client, reviewer):
    round, _ = labelling_round_with_items(3, round_kwargs={"strategy_mix": {"entropy": 0.8, "random": 0.2},
                                                           "objectives": ["exclusive", "rule"]})

    html = client.get("/label/rounds/").content.decode()

    assert f"Round {round.number}</a>" in html and "entropy 80 % + random 20 % · exclusive+rule · logreg" in html
    assert "0 / 3" in html and "Open the round" in html


def test_the_form_opens_a_round_with_the_mix_and_settings(client, reviewer, sent_tasks,
                                                         django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/label/rounds/", {
            "share_entropy": "70", "share_random": "30", "share_margin": "0", "batch_size": "50",
            "objectives": "exclusive+rule", "random_share": "10", "architecture": "wide_deep",
            "diversity": "0.2", "auto_continue": "on"})

    round = LabellingRound.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/label/rounds/{round.pk}/"
    assert (round.strategy_mix, round.batch_size, round.objectives, round.random_share, round.architecture,
            round.options, round.auto_continue, round.created_by) == (
        {"entropy": 70.0, "random": 30.0}, 50, ["exclusive", "rule"], 0.1, "wide_deep", {"diversity": 0.2}, True,
        reviewer)
    assert sent_tasks == [("labelapp.workflow.tasks.labelling_round_fill_task", {"round_id": round.pk})]


def test_a_form_without_a_strategy_or_while_a_round_is_open_is_refused(client, reviewer):
    empty = client.post("/label/rounds/", {"batch_size": "50", "objectives": "exclusive", "random_share": "0"})
    LabellingRoundFactory(number=1)
    busy = client.post("/label/rounds/", {"share_entropy": "100", "batch_size": "50", "objectives": "exclusive",
                                          "random_share": "0"})

    assert empty.status_code == busy.status_code == 400
    assert "choose at least one sampling strategy" in empty.content.decode()
    assert "Round 1 is still open" in busy.content.decode()
    assert LabellingRound.objects.count() == 1


def test_closing_early_starts_the_retraining(client, reviewer, django_capture_on_commit_callbacks):
    round, _ = labelling_round_with_items(2)

    with mock.patch("labelapp.workflow.services.rounds.labelling_round_retrain_send") as send:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(f"/label/rounds/{round.pk}/close/")

    round.refresh_from_db()
    assert response.status_code == 302 and round.status == RoundStatus.CLOSING
    assert round.close_reason == "closed early by rev"
    send.assert_called_once_with(round_id=round.pk, train_run_id=round.train_run_id)


def test_progress_polls_while_closing_and_stops_when_the_round_is_done(client, reviewer):
    run = TrainRunFactory(status="running", stage="train", progress_percent=40, progress_message="epoch 3")
    round, _ = labelling_round_with_items(2, round_kwargs={"status": RoundStatus.CLOSING, "train_run": run})

    page = client.get(f"/label/rounds/{round.pk}/").content.decode()
    polling = client.get(f"/label/rounds/{round.pk}/", {"fragment": "progress"}, **HTMX)
    LabellingRound.objects.filter(pk=round.pk).update(status=RoundStatus.CLOSED)
    finished = client.get(f"/label/rounds/{round.pk}/", {"fragment": "progress"}, **HTMX)

    assert 'hx-trigger="every 2s"' in page and "training" in page and "epoch 3" in page
    assert polling.status_code == 200 and b"<html" not in polling.content
    assert finished.status_code == 286 and finished["HX-Refresh"] == "true"


def test_round_pages_are_for_reviewers(client, make_user):
    round = LabellingRoundFactory()
    client.force_login(make_user("lab", LABELLER))

    assert client.get("/label/rounds/").status_code == 403
    assert client.get(f"/label/rounds/{round.pk}/").status_code == 403
    assert client.post(f"/label/rounds/{round.pk}/close/").status_code == 403


def test_the_admin_lists_rounds_and_queue_items_read_only(client, make_user):
    round, items = labelling_round_with_items(2)
    client.force_login(make_user("admin", staff=True))
    from django.contrib.auth.models import User

    User.objects.filter(username="admin").update(is_superuser=True)

    assert client.get("/admin/workflow/labellinground/").status_code == 200
    assert client.get(f"/admin/workflow/labellinground/{round.pk}/change/").status_code == 200
    assert client.get("/admin/workflow/queueitem/").status_code == 200
    assert client.get("/admin/workflow/queueitem/add/").status_code == 403


WEB_PROCESS = """
import sys
import django
django.setup()
from django.contrib.auth.models import User
from django.test import Client
import labelapp.workflow.services.rounds as rounds

rounds.labelling_round_retrain_send = lambda **kwargs: None  # no broker message from this check
client = Client()
client.force_login(User.objects.get(username=sys.argv[1]))
for url in ("/label/", "/label/rounds/", f"/label/rounds/{sys.argv[2]}/"):
    assert client.get(url).status_code == 200, url
assert client.post(f"/label/rounds/{sys.argv[2]}/close/").status_code == 302
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""


@pytest.mark.django_db(transaction=True)
def test_the_labelling_and_round_pages_never_load_tensorflow(make_user):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from django.conf import settings
    from django.db import connection

    round, _ = labelling_round_with_items(2)
    make_user("staff", staff=True)
    db = settings.DATABASES["default"]
    env = {**os.environ, "DJANGO_DEBUG": "1", "DJANGO_SETTINGS_MODULE": "config.settings",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}"}

    result = subprocess.run([sys.executable, "-c", WEB_PROCESS, "staff", str(round.pk)], env=env,
                            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["False", "False"], "a web request loaded TensorFlow"
