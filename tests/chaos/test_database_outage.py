"""The database goes away under a running app (gunicorn on a private PostgreSQL holding a copy of the test data).

D12: while PostgreSQL is down every request answers 503 with Retry-After — JSON for the API, a page for the UI —
never a raw 500; once it is back (or right after a restart) the next request succeeds on a new connection.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.authtoken.models import Token

from labelapp.common.roles import REVIEWER
from tests.chaos.conftest import App, app_env, wait_for
from tests.chaos.test_broker_and_cache_outage import _login
from tests.factories import category

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_database_away_gives_503_with_retry_after_and_requests_recover_when_it_returns(
        transactional_db, postgres, valkey, static_root, tmp_path, make_user):
    reviewer = make_user("chaos-db-reviewer", REVIEWER)
    token = Token.objects.create(user=reviewer).key
    category("Women > Dresses", exclusive=True)
    postgres.copy_database(source_port=int(settings.DATABASES["default"]["PORT"]),
                           source_name=connection.settings_dict["NAME"], name="labelapp")
    env = app_env(database_url=f"postgres://labelapp@127.0.0.1:{postgres.port}/labelapp", redis_url=valkey.url,
                  folder=tmp_path)
    env["STATIC_ROOT"] = str(static_root)
    app = App(env=env, folder=tmp_path)
    try:
        app.start_web()
        _login(app, reviewer.username)
        api = {"Authorization": f"Token {token}"}
        assert app.get("/api/v1/categories/", headers=api).status_code == 200
        assert app.get("/label/rounds/").status_code == 200

        postgres.stop()
        for _ in range(3):
            down = app.get("/api/v1/categories/", headers=api)
            assert down.status_code == 503, down.text[:1000]
            assert down.headers["Retry-After"] == "5" and "database is unavailable" in down.json()["detail"]
            page = app.get("/label/rounds/")
            assert page.status_code == 503 and "Back in a moment" in page.text
        assert app.get("/api/v1/health/").status_code == 503

        postgres.start()
        wait_for(lambda: app.get("/api/v1/categories/", headers=api).status_code == 200, timeout=20,
                 what="the API to answer again")
        assert app.get("/label/rounds/").status_code == 200

        # A restart between two requests: the persistent connection is found dead and replaced, no error at all.
        postgres.stop()
        postgres.start()
        again = app.get("/api/v1/categories/", headers=api)
        assert again.status_code == 200, again.text[:1000]
        assert "Women > Dresses" in again.text
        assert " 500 " not in app.log("web")
    finally:
        app.stop()
