"""A real prefork worker serves its task metrics over HTTP, and the operations page sees it answer."""
from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app
from labelapp.common.roles import REVIEWER

pytestmark = pytest.mark.integration

TASK = "labelapp.common.tasks.outbox_relay_task"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def metrics_port() -> int:
    return _free_port()


@pytest.fixture
def celery_worker_env(metrics_port, tmp_path) -> dict[str, str]:
    # Prefork children count their tasks in files here; the worker's main process serves the sum.
    (tmp_path / "prometheus").mkdir()
    return {"CELERY_METRICS_PORT": str(metrics_port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}


@pytest.fixture
def celery_worker_pool() -> list[str]:
    return ["--pool=prefork", "--concurrency=1"]


def test_the_worker_serves_the_metrics_of_the_tasks_its_children_ran(celery_worker_process, metrics_port,
                                                                      client, make_user):
    app.send_task(TASK, queue=celery_worker_process["queue"]).get(timeout=60)

    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()

    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(body) for sample in family.samples}
    assert samples[("labelapp_celery_tasks_total", (("state", "success"), ("task", TASK)))] == 1
    assert samples[("labelapp_celery_task_duration_seconds_count", (("task", TASK),))] == 1

    client.force_login(make_user("rev", REVIEWER))
    page = client.get("/review/operations/")
    assert celery_worker_process["hostname"] in page.content.decode()
