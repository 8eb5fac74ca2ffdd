"""Websockets for scripts: `Authorization: Token <key>` on the handshake signs the socket in, like it does an API
request (the browser's session cookie keeps working; a token wins when both are sent). An unknown or revoked token
leaves the socket anonymous, so the consumer refuses it as it refuses any anonymous socket."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware

from .authentication import _resolve
from .models import User, hash_token_key


def user_for_token(key: str) -> User | None:
    """The active user an API token key belongs to (None for an unknown or revoked key, or an inactive user)."""
    token = _resolve(hash_token_key(key))
    if token is None or not token.user.is_active:
        return None
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    """Sets `scope["user"]` from a `Token` authorization header; goes inside Channels' AuthMiddlewareStack."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers") or ())
        parts = headers.get(b"authorization", b"").split()
        if len(parts) == 2 and parts[0].lower() == b"token":
            user = await database_sync_to_async(user_for_token)(parts[1].decode("latin-1"))
            if user is not None:
                scope = {**scope, "user": user}
        return await super().__call__(scope, receive, send)
