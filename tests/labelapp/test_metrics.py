"""Prometheus metrics: the web's /metrics (who may read it, request counters, queue lengths) and the task counters
the Celery signal handlers keep."""
from __future__ import annotations

import uuid

import pytest
import redis
from celery import current_app, shared_task
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from labelapp.common.models import OutboxMessage
from labelapp.common.roles import LABELLER

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests"
CLOSED_PORT_BROKER = "redis://127.0.0.1:1/0"


@shared_task(name="tests.metrics.succeeds")
def succeeds() -> int:
    return 1


@shared_task(name="tests.metrics.fails")
def fails() -> None:
    raise ValueError("bad input")


@pytest.fixture(autouse=True)
def _token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def private_queue(settings):
    name = f"test-metrics-{uuid.uuid4().hex[:12]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = name
    yield name
    with current_app.connection_for_write() as connection:
        connection.default_channel.queue_delete(name)


def _scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def test_metrics_refuse_anonymous_callers_wrong_tokens_and_non_staff_users(client, make_user, settings):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token").status_code == 401

    client.force_login(make_user("lab", LABELLER))
    assert client.get("/metrics").status_code == 403

    client.logout()
    settings.METRICS_TOKEN = ""  # no token set: no bearer is accepted, only staff sessions
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_a_staff_session_may_read_the_metrics(client, make_user):
    client.force_login(make_user("boss", staff=True))

    assert client.get("/metrics").status_code == 200


def test_metrics_count_requests_and_give_the_real_queue_lengths(client, make_user, settings, private_queue):
    for _ in range(3):
        current_app.send_task("tests.never_run", queue=private_queue, retry=False)
    OutboxMessage.objects.create(task="labelapp.catalogue.tasks.rules_apply_task")
    client.force_login(make_user("lab", LABELLER))
    client.get("/products/")
    client.logout()

    samples = _scrape(client)

    llen = redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(private_queue)
    assert llen == 3
    assert samples[("labelapp_celery_queue_length", (("queue", private_queue),))] == llen
    assert samples[("labelapp_broker_up", ())] == 1
    assert samples[("labelapp_outbox_pending", ())] == 1
    by_view = {labels: value for (name, labels), value in samples.items()
               if name == "django_http_requests_total_by_view_transport_method_total"}
    assert by_view[(("method", "GET"), ("transport", "http"), ("view", "product-list"))] >= 1


def test_with_the_broker_down_metrics_still_answer_and_say_so(client, settings):
    settings.CELERY_BROKER_URL = CLOSED_PORT_BROKER

    samples = _scrape(client)

    assert samples[("labelapp_broker_up", ())] == 0
    assert not [name for name, _ in samples if name == "labelapp_celery_queue_length"]


def _value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_task_signals_count_successes_and_failures_with_their_duration():
    before = {
        "ok": _value("labelapp_celery_tasks_total", task="tests.metrics.succeeds", state="success"),
        "failed": _value("labelapp_celery_tasks_total", task="tests.metrics.fails", state="failure"),
        "error": _value("labelapp_celery_task_failures_total", task="tests.metrics.fails", exception="ValueError"),
        "timed": _value("labelapp_celery_task_duration_seconds_count", task="tests.metrics.succeeds"),
    }

    succeeds.apply()
    fails.apply(throw=False)

    assert _value("labelapp_celery_tasks_total", task="tests.metrics.succeeds", state="success") == before["ok"] + 1
    assert _value("labelapp_celery_tasks_total", task="tests.metrics.fails", state="failure") == before["failed"] + 1
    assert _value("labelapp_celery_task_failures_total", task="tests.metrics.fails",
                  exception="ValueError") == before["error"] + 1
    assert _value("labelapp_celery_task_duration_seconds_count", task="tests.metrics.succeeds") == before["timed"] + 1
