"""The operations page: queue lengths, the outbox, workers, recent failures, and what is down instead of a 500."""
from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import redis
from celery import current_app
from django.utils import timezone

from labelapp.common.models import OutboxMessage
from labelapp.common.roles import LABELLER, REVIEWER
from tests.factories import TrainRunFactory

pytestmark = pytest.mark.django_db

URL = "/review/operations/"
CLOSED_PORT_BROKER = "redis://127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def private_queue(settings):
    """A queue name of this test's own, shown as the default queue; deleted from the broker afterwards."""
    name = f"test-ops-{uuid.uuid4().hex[:12]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = name
    yield name
    with current_app.connection_for_write() as connection:
        connection.default_channel.queue_delete(name)


def _push(queue: str, count: int) -> None:
    for _ in range(count):
        current_app.send_task("tests.never_run", queue=queue, retry=False)


def test_the_page_shows_queue_lengths_the_outbox_and_what_answers(client, make_user, settings, private_queue):
    _push(private_queue, 2)
    waiting = OutboxMessage.objects.create(task="classifier.tasks.train_run_execute_task", kwargs={"train_run_id": 7},
                                           attempts=3, last_error="OperationalError: Connection refused")
    OutboxMessage.objects.filter(id=waiting.id).update(created_at=timezone.now() - timedelta(minutes=12))
    TrainRunFactory(status="failed", error="ValueError: no labelled products")
    client.force_login(make_user("rev", REVIEWER))

    response = client.get(URL)

    assert response.status_code == 200
    assert redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(private_queue) == 2
    queues = dict(response.context["overview"].queues.value)
    assert queues[private_queue] == 2
    page = response.content.decode().replace("\xa0", " ")
    assert private_queue in page and "OperationalError: Connection refused" in page
    assert "12 min" in page and "ValueError: no labelled products" in page
    assert response.context["overview"].broker.value == "ok"
    assert response.context["overview"].database.value == "ok"
    assert "unavailable" not in page


def test_with_the_broker_down_every_broker_part_says_unavailable_instead_of_failing(client, make_user, settings):
    settings.CELERY_BROKER_URL = CLOSED_PORT_BROKER
    OutboxMessage.objects.create(task="labelapp.catalogue.tasks.rules_apply_task")
    client.force_login(make_user("rev", REVIEWER))

    started = time.monotonic()
    response = client.get(URL)

    assert response.status_code == 200
    assert time.monotonic() - started < 10
    overview = response.context["overview"]
    assert overview.queues.value is None and overview.workers.value is None
    assert "Connection refused" in overview.broker.unavailable or "Error 111" in overview.broker.unavailable
    assert overview.database.value == "ok" and overview.outbox.value.pending == 1
    assert response.content.decode().count("unavailable:") >= 3


def test_an_htmx_refresh_gets_the_panels_only(client, make_user):
    client.force_login(make_user("rev", REVIEWER))

    partial = client.get(URL, HTTP_HX_REQUEST="true")

    assert partial.status_code == 200 and b"<html" not in partial.content and b"Queues" in partial.content


def test_only_reviewers_and_staff_see_the_page(client, make_user):
    assert client.get(URL).status_code == 302  # to the login page

    client.force_login(make_user("lab", LABELLER))
    assert client.get(URL).status_code == 403

    client.force_login(make_user("boss", staff=True))
    assert client.get(URL).status_code == 200
