"""One JSON error format for the whole API: `{"detail": "...", "errors": {"field": ["message", ...]}}`."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A business rule refused the request; the message is shown to the user (HTTP 400 unless told otherwise)."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code is not None:
            self.status_code = status_code


# Documentation of that shape for the OpenAPI schema (finetune.schema documents it on every operation).
class ErrorSerializer(serializers.Serializer):
    """The body of every API error."""

    detail = serializers.CharField(help_text="What went wrong, in a sentence a user can act on.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages by field name (empty when the error is not about a field).",
    )


def _flatten(data: Any) -> list[str]:
    if isinstance(data, dict):
        return [m for v in data.values() for m in _flatten(v)]
    if isinstance(data, list):
        return [m for v in data for m in _flatten(v)]
    return [str(data)]


def _field_errors(data: Any) -> dict[str, list[str]]:
    if not isinstance(data, dict):
        return {}
    return {str(k): _flatten(v) for k, v in data.items() if k not in ("detail", "non_field_errors")}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler producing the common error body; ServiceError and engine errors become 400."""
    from training.engine.errors import EngineError

    if isinstance(exc, ServiceError):
        errors = {exc.field: [exc.message]} if exc.field else {}
        return Response({"detail": exc.message, "errors": errors}, status=exc.status_code)
    if isinstance(exc, EngineError):
        return Response({"detail": str(exc), "errors": {}}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(data)
        non_field = data.get("non_field_errors") if isinstance(data, dict) else data
        if non_field:
            detail = " ".join(_flatten(non_field))
        elif errors:
            first_field, messages = next(iter(errors.items()))
            detail = f"{first_field}: {messages[0]}" if len(errors) == 1 else "Some fields are invalid."
        else:
            detail = "Invalid input."
        response.data = {"detail": detail, "errors": errors}
    elif isinstance(exc, exceptions.Throttled):
        detail = str(data.get("detail", "Too many requests.")) if isinstance(data, dict) else "Too many requests."
        response.data = {"detail": detail, "errors": {}}
    else:
        detail = data.get("detail") if isinstance(data, dict) else None
        response.data = {"detail": str(detail or " ".join(_flatten(data))), "errors": _field_errors(data)}
    return response


@csrf_exempt  # a POST to no route is a 404 for everyone, not a CSRF failure
def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """404 for URLs under /api/ that match no route."""
    return JsonResponse({"detail": "Not found.", "errors": {}}, status=404)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF failures: the common JSON error for the API, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"detail": f"CSRF Failed: {reason}. Reload the page and try again.", "errors": {}}, status=403
        )
    from django.views.csrf import csrf_failure as default_failure

    return default_failure(request, reason=reason)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400 (a body past DATA_UPLOAD_MAX_MEMORY_SIZE, a malformed request): the common JSON error under
    /api/ (413 for a body that is too large), Django's page elsewhere."""
    from django.conf import settings
    from django.core.exceptions import RequestDataTooBig

    if not request.path.startswith("/api/"):
        from django.views.defaults import bad_request as default_bad_request

        return default_bad_request(request, exception)  # type: ignore[arg-type]
    if isinstance(exception, RequestDataTooBig):
        limit_mb = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 1024**2
        return JsonResponse(
            {
                "detail": f"The request body is larger than the {limit_mb:g} MB this endpoint accepts "
                "(dataset files go to the upload endpoint as multipart).",
                "errors": {},
            },
            status=413,
        )
    return JsonResponse({"detail": "Bad request.", "errors": {}}, status=400)
