"""The HTTP side of the ASGI app: Django's handler with a bound on the requests one web process runs at once.

Under ASGI every synchronous view runs in a thread of its own, and each such thread takes a database connection
from the process's pool. Without a bound, a burst of users means a burst of threads all waiting on the pool and
the CPU; with it, a request beyond WEB_THREADS waits here on the event loop (cheaply: its body is already read), and
one that cannot start within WEB_QUEUE_TIMEOUT_S gets a plain 503 with `Retry-After` instead of piling up.
Long-polling routes (the playground's one-shot generation, which waits for the inference worker without holding a
connection) are exempt.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase, JsonResponse

UNBOUNDED_PATHS = re.compile(r"^/api/models/(base/)?\d+/generate/$")


def busy_response(message: str, retry_after_s: int = 2) -> JsonResponse:
    """The 503 every overload path answers with: the API's error shape and a Retry-After header."""
    response = JsonResponse({"detail": message, "errors": {}}, status=503)
    response["Retry-After"] = str(retry_after_s)
    return response


class BoundedASGIHandler(ASGIHandler):
    """Django's ASGI handler, running at most WEB_THREADS requests at once in this process."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = max(1, int(getattr(settings, "WEB_THREADS", 4)))
        self.queue_timeout = float(getattr(settings, "WEB_QUEUE_TIMEOUT_S", 10.0))
        self._slots: asyncio.Semaphore | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:  # made on first use, inside the server's event loop
            self._slots = asyncio.Semaphore(self.limit)
        return self._slots

    async def get_response_async(self, request: HttpRequest) -> Any:
        if UNBOUNDED_PATHS.match(request.path):
            return await super().get_response_async(request)
        try:
            await asyncio.wait_for(self.slots.acquire(), self.queue_timeout)
        except TimeoutError:
            response: HttpResponseBase = busy_response(
                "The server is busy right now; try again in a few seconds.")
            return response
        try:
            return await super().get_response_async(request)
        finally:
            self.slots.release()
