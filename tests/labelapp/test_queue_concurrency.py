"""Many labellers claiming at once never get the same item: threads (one connection each) and processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from labelapp.catalogue.models import Label
from labelapp.workflow.models import QueueItem, QueueItemStatus
from tests.factories import category, labelling_round_with_items

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]
ITEMS = 60


def _round_that_stays_open(make_user):
    """Return a round with ITEMS free items, plus one held elsewhere for hours: labelling every free item then
    does not complete the round, so no close task goes to the shared broker from this test."""
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import QueueItemFactory

    round, items = labelling_round_with_items(ITEMS)
    QueueItemFactory(round=round, position=ITEMS, status=QueueItemStatus.LEASED, leased_to=make_user("blocker"),
                     lease_expires_at=timezone.now() + timedelta(hours=2))
    return round, items


def _claims_are_disjoint_and_complete(claims: dict[str, list[int]], item_ids: list[int]) -> None:
    everything = [item_id for ids in claims.values() for item_id in ids]
    assert len(everything) == len(set(everything)), "an item was claimed twice"
    assert sorted(everything) == sorted(item_ids)
    assert QueueItem.objects.filter(status=QueueItemStatus.DONE).count() == len(item_ids)
    assert Label.objects.count() == len(item_ids)


def test_threads_claiming_at_once_never_share_an_item(make_user):
    from django.db import connection

    from labelapp.workflow.services.queue import queue_item_submit, queue_items_lease

    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    round, items = _round_that_stays_open(make_user)
    users = [make_user(f"labeller{n}") for n in range(8)]
    start = threading.Barrier(len(users))
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def labeller(user) -> None:
        mine = claims.setdefault(user.username, [])
        try:
            start.wait()
            while True:
                held = queue_items_lease(user=user, round=round, count=2)
                if not held:
                    return
                for item in held:
                    if item.pk not in mine:
                        mine.append(item.pk)
                queue_item_submit(item_id=held[0].pk, user=user, category=shirts, time_spent_ms=1)
        except BaseException as error:  # noqa: BLE001 — reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=labeller, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    _claims_are_disjoint_and_complete(claims, [item.pk for item in items])
    assert sum(1 for ids in claims.values() if ids) > 1, "one thread took everything: no contention tested"


CLAIMER = """
import json, os, sys, time
from pathlib import Path
import django
django.setup()
from django.contrib.auth.models import User
from labelapp.catalogue.models import Category
from labelapp.workflow.models import LabellingRound
from labelapp.workflow.services.queue import queue_item_submit, queue_items_lease

user = User.objects.get(username=sys.argv[1])
round = LabellingRound.objects.get(pk=int(sys.argv[2]))
shirts = Category.objects.get(pk=int(sys.argv[3]))
go = Path(sys.argv[4])
(go.parent / f"ready-{user.username}").touch()
while not go.exists():
    time.sleep(0.01)
claimed = []
while True:
    held = queue_items_lease(user=user, round=round, count=2)
    if not held:
        break
    claimed.extend(item.pk for item in held if item.pk not in claimed)
    queue_item_submit(item_id=held[0].pk, user=user, category=shirts, time_spent_ms=1)
print(json.dumps(claimed))
"""


def test_processes_claiming_at_once_never_share_an_item(make_user, tmp_path):
    from django.conf import settings
    from django.db import connection

    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    round, items = _round_that_stays_open(make_user)
    users = [make_user(f"process{n}") for n in range(4)]
    db = settings.DATABASES["default"]
    env = {**os.environ, "DJANGO_DEBUG": "1", "DJANGO_SETTINGS_MODULE": "config.settings",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}"}
    go = tmp_path / "go"
    processes = {
        user.username: subprocess.Popen([sys.executable, "-c", CLAIMER, user.username, str(round.pk), str(shirts.pk),
                                         str(go)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for user in users
    }
    # Start claiming only once every process has set Django up, so that they claim at the same moment.
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{user.username}").exists() for user in users):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes.values())
        time.sleep(0.05)
    go.touch()
    claims = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()[-3000:]
        claims[name] = json.loads(out.decode().strip().splitlines()[-1])

    _claims_are_disjoint_and_complete(claims, [item.pk for item in items])
