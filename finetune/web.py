"""The HTTP side of the ASGI app: Django's handler on a fixed set of request threads per web process.

Django's own ASGI handler starts a new thread for every request and, with our synchronous middleware, hops between
the event loop and that thread about twenty times per request. Each such thread also takes its own database
connection. Here instead:

- each web process has WEB_THREADS request threads (default 6; `finetune.serve` passes it on); a request runs
  its whole synchronous part (middleware, view, response close) on one of them, in one hop;
- a request first reads its body on the event loop (a slow upload holds no thread), then waits for a free thread;
  one that cannot get a thread within WEB_QUEUE_TIMEOUT_S answers a plain 503 with `Retry-After` instead of piling up;
- so a process never uses more than WEB_THREADS database connections at once, which its psycopg pool
  (DB_POOL_MAX_SIZE) covers; each connection goes back to the pool when its request ends.

Long requests that use neither the CPU nor the database (the playground's one-shot generation, which waits up to
PLAYGROUND_TIMEOUT_S for the inference worker; file downloads, streamed at the client's pace) run the way Django runs
them, on a thread of their own, so they never take a request thread.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpRequest, JsonResponse
from django.urls import set_script_prefix

from finetune.db import release_db_connections

# Requests that may last long without using the CPU or the database: the playground's one-shot generation (waits
# for the inference worker) and file downloads (stream to the client at its pace).
UNBOUNDED_PATHS = re.compile(r"^/api/models/(base/)?\d+/generate/$|^/api/.+/download/$|^/media/")


def busy_response(message: str, retry_after_s: int = 2) -> JsonResponse:
    """The 503 every overload path answers with: the API's error shape and a Retry-After header."""
    response = JsonResponse({"detail": message, "errors": {}}, status=503)
    response["Retry-After"] = str(retry_after_s)
    return response


class _BodyRead:
    """An ASGI `receive` whose request body was already read (see BoundedASGIHandler.read_body)."""

    def __init__(self, receive: Any, body_file: Any) -> None:
        self.receive, self.body_file = receive, body_file

    async def __call__(self) -> Any:
        return await self.receive()


class BoundedASGIHandler(ASGIHandler):
    """Django's ASGI handler running requests on WEB_THREADS fixed threads (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        # Our middleware and views are synchronous: build the synchronous chain, run whole requests in one hop.
        self.load_middleware(is_async=False)
        self.threads = max(1, int(settings.WEB_THREADS))
        self.queue_timeout = float(settings.WEB_QUEUE_TIMEOUT_S)
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"request-{i}") for i in range(self.threads)
        ]
        self._free: asyncio.Queue[ThreadPoolExecutor] | None = None

    def _free_executors(self) -> asyncio.Queue[ThreadPoolExecutor]:
        if self._free is None:  # made on first use, inside the server's event loop
            self._free = asyncio.Queue()
            for executor in self.executors:
                self._free.put_nowait(executor)
        return self._free

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        receive = _BodyRead(receive, body_file)
        if UNBOUNDED_PATHS.match(scope.get("path", "")):
            async with ThreadSensitiveContext():
                await self.handle(scope, receive, send)
            return
        free = self._free_executors()
        try:
            executor = await asyncio.wait_for(free.get(), self.queue_timeout)
        except TimeoutError:
            body_file.close()
            await self.send_response(busy_response("The server is busy right now; try again in a few seconds."), send)
            return
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            free.put_nowait(executor)

    async def read_body(self, receive: Any) -> Any:
        if isinstance(receive, _BodyRead):
            return receive.body_file
        return await super().read_body(receive)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """One hop to the request thread and back, instead of Django's three (request_started, the response,
        response.close) and its two extra tasks per request. The request thread runs the whole synchronous part:
        the request_started signal, middleware and view, and, for a response already in memory, its close()
        (request_finished); the event loop then only sends the bytes. A streamed response (rare on bounded paths) is
        sent and closed the way Django does it. The client-disconnect watch Django adds cannot stop a synchronous
        view anyway, so it is left out here; an unbounded path (a download) keeps Django's own handling."""
        if UNBOUNDED_PATHS.match(scope.get("path", "")):
            await super().handle(scope, receive, send)
            return
        body_file = await self.read_body(receive)
        try:
            response = await sync_to_async(self._serve, thread_sensitive=True)(scope, body_file)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client went away while we answered
            if response.streaming:
                await sync_to_async(self._close, thread_sensitive=True)(response)
        finally:
            body_file.close()

    def _serve(self, scope: dict[str, Any], body_file: Any) -> Any:
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        try:
            request, response = self.create_request(scope, body_file)
            if request is not None:
                response = self.get_response(request)
                response._handler_class = self.__class__
            if not response.streaming:
                response.close()  # the content is in memory: request_finished runs here, on the request thread
            return response
        finally:
            release_db_connections()

    @staticmethod
    def _close(response: Any) -> None:
        try:
            response.close()
        finally:
            release_db_connections()

    async def get_response_async(self, request: HttpRequest) -> Any:
        return await sync_to_async(self._respond, thread_sensitive=True)(request)

    def _respond(self, request: HttpRequest) -> Any:
        try:
            return self.get_response(request)
        finally:
            # Sending the body (a streamed download, say) needs no database connection: give it back now.
            release_db_connections()
