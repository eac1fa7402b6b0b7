"""Shared fixtures: Django test settings, role users, an API client."""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_DEBUG", "1")

import pytest


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
