"""A real Celery worker process on the real broker (Valkey), using the test database."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def celery_worker_env() -> dict[str, str]:
    """Extra environment for the worker process; a test module overrides this fixture to set more."""
    return {}


@pytest.fixture
def celery_worker_pool() -> list[str]:
    """The worker's pool options; a test module overrides this fixture to run another pool."""
    return ["--pool=solo"]


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path, celery_worker_env, celery_worker_pool):
    """Start `celery worker` as a subprocess against this test's database; stop it afterwards.

    Tests using it must commit their data (transactional_db), since the worker has its own connection.
    """
    from django.conf import settings
    from django.db import connection

    from config.celery import app

    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ARTEFACT_ROOT": str(settings.ARTEFACT_ROOT),
        "CELERY_TASK_ALWAYS_EAGER": "0",
        **celery_worker_env,
    }
    queue = f"test-{os.getpid()}-{time.monotonic_ns()}"
    hostname = f"{queue}@localhost"
    # Every task, including those the worker itself sends, goes to this worker's private queue, so
    # parallel test runs (or a demo worker on the same broker) never take them.
    env["CELERY_DEFAULT_QUEUE"] = env["CELERY_ML_QUEUE"] = queue
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", *celery_worker_pool, "--loglevel=INFO",
         f"--queues={queue}", f"--hostname={hostname}", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    saved_queue, saved_routes = app.conf.task_default_queue, app.conf.task_routes
    app.conf.task_default_queue, app.conf.task_routes = queue, {}
    _router_reset(app)
    try:
        deadline = time.monotonic() + 90
        while not app.control.ping(destination=[hostname], timeout=1.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start: {(tmp_path / 'worker.log').read_text()[-3000:]}")
        # Tasks sent by the test go to this worker's private queue, so parallel runs never steal them.
        yield {"queue": queue, "hostname": hostname, "log": tmp_path / "worker.log", "process": proc}
    finally:
        app.conf.task_default_queue, app.conf.task_routes = saved_queue, saved_routes
        _router_reset(app)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        try:
            with app.connection_for_write() as connection:
                connection.default_channel.queue_delete(queue)
        except Exception:  # noqa: BLE001 — nothing to clean on a broker that is gone
            pass


def _router_reset(app) -> None:
    """Drop Celery's cached router: it is built once from the routes seen first, so without this the services'
    own `.delay()` calls would keep the ml / default routes of an earlier test instead of the private queue."""
    app.amqp.__dict__.pop("router", None)
    app.amqp.flush_routes()
