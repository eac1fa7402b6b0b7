"""HTTP endpoints of the shared layer that are not part of the REST API: the Prometheus metrics."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from labelapp.common.metrics import metrics_exposition


def _bearer_token_valid(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.METRICS_TOKEN
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                                                  expected.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text for a scraper with `Authorization: Bearer <METRICS_TOKEN>` or a staff session.

    401 (with a Bearer challenge) for anyone else not logged in, 403 for a logged-in user who is not staff.
    """
    if not (_bearer_token_valid(request) or request.user.is_staff):
        if request.user.is_authenticated:
            return HttpResponse("Metrics are for staff accounts and the metrics token.\n", status=403,
                                content_type="text/plain")
        response = HttpResponse("Send Authorization: Bearer <METRICS_TOKEN>.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
