"""API pieces every app shares: the exception handler (domain errors → 4xx), the API's 404 and the health endpoint."""

from __future__ import annotations

from celery import current_app
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from labelapp.common.roles import REVIEWER, user_has_role


def exception_handler(exc, context):
    """Turn domain errors into 4xx responses with a message; DRF's handler does the rest.

    A validation error always answers an object (the schema's ValidationError): messages about no one field
    go under `non_field_errors`, as DRF's own do.
    """
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict")
                                         else {"non_field_errors": exc.messages})
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    return drf_exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: under /api/ the JSON `{"detail": ...}` body the schema documents (a path no route matches, such
    as an id that is not a number); Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def database_ping() -> str | None:
    """Return None when the database answers, else the error text."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any failure means "down"; the text goes into the health report
        return f"{type(exc).__name__}: {exc}"
    return None


def broker_ping() -> str | None:
    """Return None when the broker answers, else the error text."""
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            conn.default_channel.client.ping()
    except Exception as exc:  # any failure means "down"; the text goes into the health report
        return f"{type(exc).__name__}: {exc}"
    return None


CHECK_RESULTS = ("ok", "error")  # one enum in the schema (SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"])


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "degraded"])
    database = serializers.ChoiceField(choices=CHECK_RESULTS)
    broker = serializers.ChoiceField(choices=CHECK_RESULTS)
    errors = serializers.DictField(child=serializers.CharField(), required=False,
                                   help_text="Reviewers and staff only: each check's error text ('' when it "
                                             "answered).")


class HealthApi(APIView):
    """Liveness of the database and the broker: 200 when both answer, 503 otherwise.

    Anyone may ask (a load balancer has no account); only reviewers and staff see the error texts, which name
    internal hosts and ports. Credentials are read when sent (a bad token is a 401), never required.
    """

    permission_classes = [AllowAny]

    def perform_authentication(self, request) -> None:
        """Authenticate lazily, after the checks: with the database down, reading a token must not be a 500."""

    @extend_schema(responses={200: HealthSerializer,
                              503: OpenApiResponse(HealthSerializer, description="The database or the broker is "
                                                                                 "down.")})
    def get(self, request):
        errors = {"database": database_ping() or "", "broker": broker_ping() or ""}
        checks = {name: "error" if error else "ok" for name, error in errors.items()}
        healthy = not any(errors.values())
        body = {"status": "ok" if healthy else "degraded", **checks}
        if self._detail_allowed(request):
            body["errors"] = errors
        return Response(body, status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE)

    @staticmethod
    def _detail_allowed(request) -> bool:
        try:
            return user_has_role(request.user, REVIEWER)
        except DatabaseError:  # the report already says the database is down; who asks cannot be known
            return False
