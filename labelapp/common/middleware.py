"""The database briefly away (a restart, a fail-over) answers 503 with Retry-After, never a raw 500.

Connections are persistent and health-checked (CONN_MAX_AGE, CONN_HEALTH_CHECKS in config/settings.py): the
first request after the database is back finds its old connection dead, and Django opens a new one before the
request's first query. While the database does not answer at all, a view's query raises OperationalError or
InterfaceError; `DatabaseUnavailableMiddleware` turns that into 503 (JSON for the API, a plain page otherwise),
and `server_error` does the same for a failure raised outside a view (e.g. in another middleware). Nothing a
user did is half-written: each request is one transaction, and the failed one was rolled back with the connection.
"""

from __future__ import annotations

import logging
import sys

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views.defaults import server_error as django_server_error

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MESSAGE = "The database is unavailable for a moment; please try again in a few seconds."
DATABASE_DOWN = (OperationalError, InterfaceError)


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """Return the 503 answer for a request that found the database away (rendered without touching it)."""
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
    wants_json = request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")
    if wants_json:
        response = JsonResponse({"detail": MESSAGE}, status=503)
    else:
        response = HttpResponse(render_to_string("503.html", {"message": MESSAGE}), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """Answer 503 instead of 500 when a view fails because the database does not answer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_DOWN):
            return None
        logger.warning("database unavailable during %s %s: %s", request.method, request.path, exception)
        return database_unavailable_response(request)


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    """handler500: 503 when the uncaught error is the database being away, Django's own 500 page otherwise."""
    if isinstance(sys.exc_info()[1], DATABASE_DOWN):
        return database_unavailable_response(request)
    return django_server_error(request, template_name=template_name)
