"""Dashboard workflows."""

from __future__ import annotations

import secrets

from django.db import transaction

from . import tasks


def request_test_notification(user_id: int) -> str:
    """Enqueue a task that sends the user a test notification; returns its nonce."""
    nonce = secrets.token_hex(8)
    transaction.on_commit(lambda: tasks.send_test_notification.apply_async(args=[user_id, nonce], queue="default"))
    return nonce
