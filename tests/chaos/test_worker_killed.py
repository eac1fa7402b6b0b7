"""A worker process killed mid-task (the OOM killer, kill -9): the task is delivered again and finishes.

Tasks acknowledge late and reject on a lost worker (config/settings.py), so the broker hands the message to the
next worker process; the import run the dead one left "running" is taken over and imported from the start
(products are upserted: nothing is duplicated, nothing stays stuck).
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from rest_framework.authtoken.models import Token

from labelapp.catalogue.models import ImportRun, ImportStatus, Product
from labelapp.common.roles import REVIEWER
from tests.chaos.conftest import wait_for
from tests.chaos.test_broker_and_cache_outage import _worker_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 20_000


def _pool_children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found]


def test_an_import_whose_worker_process_is_killed_is_delivered_again_and_completes(chaos_app, make_user):
    token = Token.objects.create(user=make_user("chaos-importer", REVIEWER)).key
    chaos_app.http.headers["Authorization"] = f"Token {token}"
    feed = "id,title,category\n" + "".join(f"K{n},Product number {n},Women > Dresses\n" for n in range(ROWS))
    chaos_app.start_web()
    chaos_app.start_worker(pool="prefork", beat=False)  # one child: the pool's
    _worker_ready(chaos_app)
    worker = chaos_app.processes["worker"]

    response = chaos_app.post("/api/v1/imports/", data={"kind": "products", "source": "big"},
                              files={"file": ("big.csv", feed.encode())})
    assert response.status_code == 202, response.text[:1000]
    run_id = response.json()["id"]
    wait_for(lambda: ImportRun.objects.filter(pk=run_id, status=ImportStatus.RUNNING).exists()
             and Product.objects.filter(source="big").exists(), timeout=60, interval=0.1,
             what=f"the import to be half way\n{chaos_app.log('worker')}")
    children = _pool_children(worker.pid)
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    halfway = Product.objects.filter(source="big").count()
    assert 0 < halfway < ROWS

    run = wait_for(lambda: ImportRun.objects.filter(pk=run_id).exclude(status=ImportStatus.RUNNING)
                   .exclude(status=ImportStatus.QUEUED).first(), timeout=180,
                   what=f"the import to finish\n{chaos_app.log('worker')}")
    assert run.status == ImportStatus.SUCCEEDED, run.error
    assert Product.objects.filter(source="big").count() == ROWS
    assert "WorkerLostError" in chaos_app.log("worker") or "exited with 'signal 9" in chaos_app.log("worker")
