"""API pieces every app shares: the exception handler (domain errors → 4xx) and the health endpoint."""

from __future__ import annotations

from celery import current_app
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """Turn domain errors into 4xx responses with a message; DRF's handler does the rest."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    return drf_exception_handler(exc, context)


def broker_ping() -> str | None:
    """Return None when the broker answers, else the error text."""
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            conn.default_channel.client.ping()
    except Exception as exc:  # any failure means "down"; the text goes into the health report
        return f"{type(exc).__name__}: {exc}"
    return None


class HealthApi(APIView):
    """Liveness of the database and the broker: 200 when both answer, 503 otherwise."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=inline_serializer("Health", fields={
        "status": serializers.CharField(), "database": serializers.CharField(), "broker": serializers.CharField()}))
    def get(self, request):
        checks = {}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}: {exc}"
        broker_error = broker_ping()
        checks["broker"] = "ok" if broker_error is None else f"error: {broker_error}"
        healthy = all(value == "ok" for value in checks.values())
        return Response({"status": "ok" if healthy else "degraded", **checks},
                        status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE)


