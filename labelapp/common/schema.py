"""The OpenAPI schema's error responses: one body per kind of error, and the errors every endpoint implies.

An endpoint documents the errors it raises itself with `error_responses(...)` in its `@extend_schema`:

    @extend_schema(responses={200: OutputSerializer, **error_responses(404, 409)})

The ones its configuration implies are added by `AutoSchema` (settings: DEFAULT_SCHEMA_CLASS): 401 wherever a
caller may authenticate (no or bad credentials), 403 wherever a role is needed, 404 on paginated lists (a page
or cursor that does not exist), 415 where a request body is read (a body of a media type no parser reads), 429
on throttled endpoints, and 503 everywhere (the database is away: labelapp.common.middleware). A 400 has the
`ValidationError` body (a message per invalid field), every other error the `Error` body (`{"detail", "code"}`).
"""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

ERROR_DESCRIPTIONS = {
    400: "Invalid input: a message per invalid field (or a malformed body).",
    401: "No credentials, or invalid ones.",
    403: "The user holds none of the roles this endpoint needs (or a session request lacks its CSRF token).",
    404: "Not found.",
    409: "The resource's current state does not allow this; the message says why.",
    413: "The upload is larger than the server accepts.",
    415: "The body's Content-Type is none of the documented ones.",
    422: "Well-formed, but it cannot succeed until the data changes; the message says why.",
    429: "Past the throttle rate: retry after the seconds the Retry-After header gives.",
    503: "The database is unavailable for a moment: retry after the seconds the Retry-After header gives.",
}


class ErrorSerializer(serializers.Serializer):
    """The body of every error but a 400."""

    detail = serializers.CharField(help_text="What went wrong, in words.")
    code = serializers.CharField(required=False, help_text="A stable code, where the endpoint documents one.")


class ValidationErrorSerializer(serializers.Serializer):
    """The body of a 400: each invalid field with its messages (an object for a nested field or list item)."""

    detail = serializers.CharField(required=False, help_text="A body that could not be parsed (malformed JSON).")
    non_field_errors = serializers.ListField(child=serializers.CharField(), required=False,
                                             help_text="Errors about the request as a whole.")


class ValidationErrorExtension(OpenApiSerializerExtension):
    """Let the ValidationError body name any field, as DRF's field errors do."""

    target_class = ValidationErrorSerializer

    def map_serializer(self, auto_schema, direction):
        schema = super().map_serializer(auto_schema, direction)
        schema["additionalProperties"] = {
            "description": "An invalid field's messages.",
            "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"},
                      {"type": "object", "additionalProperties": True}],
        }
        return schema


def error_responses(*codes: int, descriptions: dict[int, str] | None = None) -> dict[int, OpenApiResponse]:
    """Return `@extend_schema` responses for error `codes` (and those of `descriptions`, described so)."""
    descriptions = descriptions or {}
    return {code: OpenApiResponse(ValidationErrorSerializer if code == 400 else ErrorSerializer,
                                  description=descriptions.get(code, ERROR_DESCRIPTIONS.get(code, "")))
            for code in sorted({*codes, *descriptions})}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema, plus the error responses the view's configuration implies."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, response in self.implied_error_responses().items():
            responses.setdefault(str(code), self._get_response_for_code(response, str(code), direction=direction))
        return responses

    def implied_error_responses(self) -> dict[int, OpenApiResponse]:
        """Return the errors any endpoint so configured answers with: 401, 403, 404 (lists), 415, 429 and 503."""
        codes = []
        if self.view.authentication_classes:
            codes.append(401)
        if not all(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            codes.append(403)
        if self.method == "GET" and self._is_list_view() and self._get_paginator():
            codes.append(404)
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None:
            codes.append(415)
        if getattr(self.view, "throttle_classes", None):
            codes.append(429)
        codes.append(503)
        return error_responses(*codes, descriptions={404: "No such page (a page number or cursor out of range)."}
                               if 404 in codes else None)
