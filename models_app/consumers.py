"""`/ws/models/<target>/generate/`: the playground's streaming chat. `<target>` is a fine-tuned model id (owner only)
or `base-<id>` for a base model. The client sends `{messages, system?, max_new_tokens?, temperature?, top_p?,
compare_with_base?}` (or `{"type": "stop"}`) and receives `{"type": "queued"}`, `{"type": "start"}`,
`{"type": "source", "source"}`, `{"type": "token", "text", "source"}`... then `{"type": "done", "tokens",
"duration_s", ...}` or `{"type": "error", "detail"}`. Generation itself runs in an `inference` Celery worker that
sends to this socket's channel; when nothing arrives from it for PLAYGROUND_TIMEOUT_S the socket reports an error."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from finetune.exceptions import ServiceError
from finetune.redaction import hide_in

from . import playground


class GenerateConsumer(AsyncJsonWebsocketConsumer):
    """Accepts the owner of the model (anyone signed in for a base model); one generation at a time per socket."""

    target: playground.Target | None = None
    request_id: str | None = None
    last_event: float = 0.0
    watchdog: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        try:
            target = playground.Target.parse(str(self.scope["url_route"]["kwargs"]["target"]))
        except ServiceError:
            await self.close(code=4404)
            return
        if not await database_sync_to_async(playground.can_use)(user, target):
            await self.close(code=4404)  # another user's model looks exactly like a missing one
            return
        self.target = target
        await self.accept()

    async def send_json(self, content: Any, close: bool = False) -> None:
        """Every message of this socket (generated tokens, errors from the inference worker) without server paths."""
        await super().send_json(hide_in(content), close)

    async def disconnect(self, code: int) -> None:
        if self.watchdog:
            self.watchdog.cancel()
        if self.request_id:
            await database_sync_to_async(playground.cancel_generation)(self.request_id)
            self.request_id = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        try:
            content = json.loads(text_data or "")
        except ValueError:
            await self.send_json({"type": "error", "detail": "Send a JSON object with `messages`."})
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "stop":
            if self.request_id:
                await database_sync_to_async(playground.cancel_generation)(self.request_id)
            return
        if self.request_id:
            await self.send_json(
                {
                    "type": "error",
                    "detail": "A generation is already running on this socket: wait "
                    'for it to finish or send {"type": "stop"}.',
                }
            )
            return
        assert self.target is not None
        try:
            self.request_id = await database_sync_to_async(playground.start_generation)(
                self.scope["user"], self.target, content, reply_channel=self.channel_name
            )
        except ServiceError as exc:
            await self.send_json({"type": "error", "detail": exc.message, "field": exc.field})
            return
        self.last_event = time.monotonic()
        await self.send_json({"type": "queued", "request_id": self.request_id})
        if self.watchdog is None or self.watchdog.done():
            self.watchdog = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Report a worker that never starts (none running) or stops answering (killed) instead of waiting forever."""
        limit = float(settings.PLAYGROUND_TIMEOUT_S)
        while self.request_id:
            await asyncio.sleep(min(2.0, limit / 4))
            request_id = self.request_id
            if request_id and time.monotonic() - self.last_event > limit:
                self.request_id = None
                await database_sync_to_async(playground.cancel_generation)(request_id)
                await self.send_json(
                    {
                        "type": "error",
                        "request_id": request_id,
                        "detail": (
                            f"No answer from the inference worker for {limit:.0f} s. Is a Celery worker running on the "
                            "`inference` queue?"
                        ),
                    }
                )

    async def playground_event(self, event: dict[str, Any]) -> None:
        payload = event["payload"]
        if payload.get("request_id") != self.request_id:  # late events of a stopped request
            return
        self.last_event = time.monotonic()
        if payload.get("type") in ("done", "error"):
            self.request_id = None
        await self.send_json(payload)
