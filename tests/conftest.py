"""Shared fixtures: Django test settings, role users, an API client."""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
# Tasks that unit tests send on commit go to queues no worker consumes (and that are deleted at the end), never
# to the real "default" / "ml" queues: a demo worker on the same broker would run them against its own database.
UNCONSUMED_QUEUE = f"test-unconsumed-{os.getpid()}"
os.environ["CELERY_DEFAULT_QUEUE"] = os.environ["CELERY_ML_QUEUE"] = UNCONSUMED_QUEUE

import pytest


@pytest.fixture(scope="session", autouse=True)
def _unconsumed_queue_deleted():
    """Route every task to the session's unconsumed queue; delete that queue from the broker afterwards.

    pytest-django may have read the settings before this module set the environment, so the Celery app is told
    here as well: without this, tasks a test sends would go to the real "default" / "ml" queues.
    """
    from django.conf import settings

    from config.celery import app

    settings.CELERY_TASK_DEFAULT_QUEUE = settings.CELERY_ML_QUEUE = UNCONSUMED_QUEUE
    app.conf.task_default_queue, app.conf.task_routes = UNCONSUMED_QUEUE, {}
    app.amqp.__dict__.pop("router", None)
    app.amqp.flush_routes()
    yield
    try:
        from config.celery import app

        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(UNCONSUMED_QUEUE)
    except Exception:  # noqa: BLE001 — a broker that is down has nothing to clean
        pass


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Keep files written by tests out of the project's media folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ARTEFACT_ROOT = tmp_path / "artefacts"


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _outbox_fresh(monkeypatch):
    """Each test starts with the outbox willing to send at once (no back-off left by an earlier test)."""
    monkeypatch.setattr("labelapp.common.dispatch._broker_down_until", 0.0)


@pytest.fixture
def sent_tasks(monkeypatch):
    """Record what the outbox sends — (task name, kwargs), or (first task, canvas) — instead of publishing it."""
    sent = []

    def publish(message):
        sent.append((message.task, message.canvas or message.kwargs))

    monkeypatch.setattr("labelapp.common.dispatch._publish", publish)
    return sent


@pytest.fixture
def make_user(db):
    from django.contrib.auth.models import Group, User

    def make(username: str = "user", *roles: str, staff: bool = False) -> User:
        user = User.objects.create_user(username=username, password="pw-for-tests-123", is_staff=staff)
        for role in roles:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        return user

    return make


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Give each pytest process its own test database, so concurrent runs on one machine never collide."""
    from django.conf import settings

    test_settings = settings.DATABASES["default"].setdefault("TEST", {})
    base = test_settings.get("NAME") or f"test_{settings.DATABASES['default']['NAME']}"
    test_settings["NAME"] = f"{base}_{os.getpid()}"


@pytest.fixture(scope="session")
def large_photo(tmp_path_factory):
    """A real 12000×7900 (94.8 Mpx) baseline JPEG and a PNG of the same size, made once per session (~2 s).

    100-pixel blocks of random colours, JPEG quality 20: 2.7 MB on disk. `blocks` uint8 [79, 120, 3] holds the
    colours (block (i, j) covers rows 100i…, columns 100j…); the PNG is the blocks' red channel as greyscale.
    """
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    width, height = 12000, 7900
    blocks = np.random.default_rng(94).integers(0, 256, (height // 100, width // 100, 3), dtype=np.uint8)
    folder = tmp_path_factory.mktemp("large-photo")
    Image.fromarray(blocks).resize((width, height), Image.Resampling.NEAREST).save(folder / "photo.jpg", quality=20)
    grey = Image.fromarray(blocks[..., 0]).resize((width, height), Image.Resampling.NEAREST)
    grey.save(folder / "photo.png", "PNG", compress_level=1)
    return SimpleNamespace(jpeg=folder / "photo.jpg", png=folder / "photo.png", size=(width, height), blocks=blocks)
