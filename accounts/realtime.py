"""A user's realtime channel: every push to their notification sockets goes through here (group `user-<pk>`), JSON-safe
and after commit. At the bottom of the layers (with the users), so every app can publish without importing `dashboard`."""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from finetune.redaction import hide_in

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    """The Channels group of one user's notification sockets."""
    return f"user-{user_id}"


def _send(user_id: int, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:  # pragma: no cover - Channels always configured here
        return
    async_to_sync(layer.group_send)(user_group(user_id), {"type": "notify", "payload": payload})


def notify_user(user_id: int, payload: dict[str, Any]) -> None:
    """Send `payload` to every open notification socket of the user once the current transaction commits."""
    message = hide_in(json.loads(json.dumps(payload, default=str)))
    transaction.on_commit(lambda: _send(user_id, message))


def publish_task_progress(user_id: int, *, kind: str, task_id: str | int, progress: float, status: str) -> None:
    """Progress of a background task (upload processing, download, export, push) for the user's open pages."""
    notify_user(
        user_id,
        {"type": "task", "kind": kind, "id": task_id, "progress": round(float(progress), 4), "status": status},
    )
