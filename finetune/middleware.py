"""API errors that escape a view: never a debug page under /api/.

A database that cannot serve the request (every pooled connection busy past DB_POOL_TIMEOUT_S, PostgreSQL refusing
connections, a statement stopped by statement_timeout) answers 503 with `Retry-After` and a plain message; any other
unexpected error under /api/ answers the API's JSON error shape with 500, logged with its traceback. Pages outside
/api/ keep Django's behaviour (the debug page in DEBUG).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.messages.middleware import MessageMiddleware
from django.core import signals
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from finetune.web import busy_response

logger = logging.getLogger("finetune.errors")


def database_unavailable_message(exc: BaseException) -> str | None:
    """The message for a database error that means "try again shortly", or None for any other error."""
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return None
    cause = exc.__cause__
    name = type(cause).__name__ if cause is not None else ""
    if name == "PoolTimeout":
        return "The server is busy (every database connection is in use); try again in a few seconds."
    if name == "QueryCanceled":
        return "The request took too long and was stopped; try again in a moment."
    return "The database is unavailable right now; try again in a few seconds."


def api_error_response(exc: BaseException) -> JsonResponse:
    """503 for a database that cannot serve now, 500 (JSON) for anything else."""
    message = database_unavailable_message(exc)
    if message is not None:
        logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        return busy_response(message, retry_after_s=5)
    return JsonResponse(
        {"detail": "Internal server error. The error was logged; try again later.", "errors": {}}, status=500
    )


class ApiErrorMiddleware:
    """Turns exceptions raised by views under /api/ into JSON responses (see module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        if database_unavailable_message(exc) is None:
            if _is_client_error(exc):
                return None  # Http404, PermissionDenied...: Django's own handling
            logger.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
            # Keep Django's signal: the test client re-raises from it, error trackers listen to it.
            signals.got_request_exception.send(sender=None, request=request)
        return api_error_response(exc)


def _is_client_error(exc: Exception) -> bool:
    from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
    from django.http import Http404

    return isinstance(exc, (Http404, PermissionDenied, BadRequest, SuspiciousOperation))


class RejectNulQueryMiddleware:
    """400 for an /api/ request whose query string holds a NUL character (`%00`): PostgreSQL cannot compare text
    with one, so a filter such as `?search=` would otherwise fail inside the query (a 500). JSON bodies:
    finetune.serializers.StrictInputMixin."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if (
            ("%00" in query or "\x00" in query)
            and request.path.startswith("/api/")
            and any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists())
        ):
            return JsonResponse(
                {
                    "detail": "The query string contains a NUL character (%00), which no parameter accepts.",
                    "errors": {},
                },
                status=400,
            )
        return self.get_response(request)


class PageMessageMiddleware(MessageMiddleware):
    """Django's messages for the pages (admin, login); the API never shows any, so its requests skip setting up
    the message storage (a noticeable share of a small API request)."""

    def process_request(self, request: HttpRequest) -> None:
        if not request.path.startswith("/api/"):
            super().process_request(request)
