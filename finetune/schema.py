"""The OpenAPI schema's project-wide part: every operation documents the errors any view of this API can answer,
with the API's one error body (`finetune.exceptions.ErrorSerializer`), so a client (and the schema fuzzing test,
tests/test_schemathesis.py) can rely on the schema for every status it may get. A view documents only its own
successes and the errors particular to it (a 409, a 502 from the Hub...); what is added here never replaces them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse

from finetune.exceptions import ErrorSerializer

BODY_METHODS = ("POST", "PUT", "PATCH")


# What every text field and parameter accepts: finetune.serializers.StrictInputMixin, DRF's text fields and
# finetune.middleware.RejectNulQueryMiddleware refuse NUL characters (PostgreSQL stores none).
NUL_FREE = "^[^\\x00]*$"


def _forbid_nul(schema: Any) -> None:
    """Add NUL_FREE to every plain string schema (no format, enum or pattern of its own) in `schema`, however deep."""
    if isinstance(schema, list):
        for item in schema:
            _forbid_nul(item)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if (kind == "string" or (isinstance(kind, list) and "string" in kind)) and not (
        {"format", "enum", "pattern", "const"} & schema.keys()
    ):
        schema["pattern"] = NUL_FREE
    for value in schema.values():
        if isinstance(value, (dict, list)):
            _forbid_nul(value)


def forbid_nul_in_request_strings(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: request strings (parameters, bodies, the `...Request` components) say
    that they take no NUL character, as the API enforces (400)."""
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                _forbid_nul(parameter.get("schema"))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _forbid_nul(media.get("schema"))
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request"):
            _forbid_nul(component)
    return result


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema, plus the error responses every operation can return (see module docstring)."""

    def error_statuses(self) -> dict[str, str]:
        """Status -> description of the errors this operation can answer whatever the view does."""
        view: Any = self.view
        statuses = {
            "400": "Invalid request: a field, a query parameter or the body is refused (NUL bytes "
            "included), or a rule of the service says no (`errors` names the fields)."
        }
        if view.get_authenticators():
            statuses["401"] = "Not signed in, or the API token is unknown or revoked."
            statuses["403"] = "Not allowed: a missing or wrong CSRF token (session sign-in), or no permission."
        elif self.method not in ("GET", "HEAD", "OPTIONS"):
            statuses["403"] = "A missing or wrong CSRF token."
        if "{" in self.path:
            statuses["404"] = "No such object for this user (another user's id answers the same)."
        elif self._get_paginator() is not None and self._is_list_view():
            statuses["404"] = "No such page (`page` past the last one)."
        if self.method not in ("GET", "HEAD", "OPTIONS") or "{" in self.path:
            statuses["409"] = "The object's current state does not allow this (the message says why)."
        if self.method in BODY_METHODS and self.get_request_serializer() is not None:
            statuses["413"] = "The request body is larger than this endpoint accepts."
            statuses["415"] = "The body's Content-Type is not one this endpoint reads."
        if view.get_throttles():
            statuses["429"] = "Too many requests; `Retry-After` says when to try again."
        elif self.method not in ("GET", "HEAD", "OPTIONS"):
            statuses["429"] = "A quota is reached (the message says which and what to do)."
        statuses["503"] = "The server is busy or its database unavailable; `Retry-After` says when to try again."
        return statuses

    def map_parsers(self) -> list[str]:
        """Request bodies are JSON: the browser app and scripts send JSON, and only JSON keeps types (a form field
        is always text, and DRF reads an empty one as absent). The one upload (multipart) declares its own media
        type on its view. The parsers still read forms, which the schema does not advertise."""
        return ["application/json"]

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code, description in self.error_statuses().items():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=description), code, direction=direction
                )
        return responses
