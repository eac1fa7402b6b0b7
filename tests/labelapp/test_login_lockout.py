"""Login throttling (django-axes): a (username, address) pair is locked out after AXES_FAILURE_LIMIT failures."""
from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.db.models import F
from rest_framework.authtoken.models import Token

from labelapp.common.roles import API_CLIENT, LABELLER

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"
SITE_LOGIN, ADMIN_LOGIN = "/accounts/login/", "/admin/login/"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _fail(client, url: str, username: str, times: int, **headers) -> list[int]:
    return [client.post(url, {"username": username, "password": "wrong"}, **headers).status_code
            for _ in range(times)]


def _log_in(client, url: str, username: str, **headers):
    return client.post(url, {"username": username, "password": PASSWORD}, **headers)


@pytest.mark.parametrize("url", [SITE_LOGIN, ADMIN_LOGIN])
def test_forty_wrong_passwords_lock_the_right_one_out(client, make_user, settings, url):
    make_user("boss", staff=True)
    limit = settings.AXES_FAILURE_LIMIT

    statuses = _fail(client, url, "boss", 40)
    response = _log_in(client, url, "boss")

    assert statuses[:limit - 1] == [200] * (limit - 1)  # the form again, with its error
    assert set(statuses[limit:]) == {429}
    assert response.status_code == 429
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_another_users_failures_from_the_same_address_lock_nobody_else(client, make_user):
    make_user("victim", LABELLER)
    make_user("colleague", LABELLER)

    _fail(client, SITE_LOGIN, "victim", 40)

    assert _log_in(client, SITE_LOGIN, "colleague").status_code == 302
    assert _log_in(client, SITE_LOGIN, "victim", REMOTE_ADDR="198.51.100.9").status_code == 302


def test_the_lockout_ends_after_the_cool_off(client, make_user, settings):
    make_user("lab", LABELLER)
    _fail(client, SITE_LOGIN, "lab", settings.AXES_FAILURE_LIMIT)
    assert _log_in(client, SITE_LOGIN, "lab").status_code == 429

    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))

    assert _log_in(client, SITE_LOGIN, "lab").status_code == 302


def test_a_successful_login_forgets_the_earlier_failures(client, make_user, settings):
    make_user("lab", LABELLER)
    almost = settings.AXES_FAILURE_LIMIT - 1

    _fail(client, SITE_LOGIN, "lab", almost)
    assert _log_in(client, SITE_LOGIN, "lab").status_code == 302
    client.post("/accounts/logout/")
    _fail(client, SITE_LOGIN, "lab", almost)

    assert _log_in(client, SITE_LOGIN, "lab").status_code == 302


def test_an_admin_unlocks_a_user_with_the_axes_reset_commands(client, make_user, settings):
    make_user("lab", LABELLER)
    _fail(client, SITE_LOGIN, "lab", settings.AXES_FAILURE_LIMIT)
    assert _log_in(client, SITE_LOGIN, "lab").status_code == 429

    call_command("axes_reset_username", "lab")

    assert _log_in(client, SITE_LOGIN, "lab").status_code == 302


def test_behind_a_reverse_proxy_the_forwarded_address_is_the_client(client, make_user, settings):
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    make_user("lab", LABELLER)

    _fail(client, SITE_LOGIN, "lab", settings.AXES_FAILURE_LIMIT, HTTP_X_FORWARDED_FOR="203.0.113.7")

    assert _log_in(client, SITE_LOGIN, "lab", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429
    assert _log_in(client, SITE_LOGIN, "lab", HTTP_X_FORWARDED_FOR="198.51.100.9").status_code == 302


def test_api_tokens_still_work_for_a_user_locked_out_of_the_login_page(client, api_client, make_user, settings):
    user = make_user("shop", API_CLIENT)
    token = Token.objects.create(user=user)
    _fail(client, SITE_LOGIN, "shop", settings.AXES_FAILURE_LIMIT)

    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    assert api_client.get("/api/v1/categories/").status_code == 200
    assert api_client.get("/api/v1/health/").status_code in (200, 503)
