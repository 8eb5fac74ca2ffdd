"""Celery entry points of the dashboard app (thin: each calls one function)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.core.management import call_command
from django.utils import timezone

from accounts import realtime as events

logger = logging.getLogger(__name__)


@shared_task(name="dashboard.tasks.send_test_notification", bind=True)
def send_test_notification(self, user_id: int, nonce: str) -> None:  # type: ignore[no-untyped-def]
    """Push a test notification to the user's sockets: proves browser -> daphne -> Redis <- Celery (idempotent)."""
    events.notify_user(
        user_id,
        {
            "type": "notification",
            "kind": "test",
            "message": "Test notification delivered by a Celery worker.",
            "nonce": nonce,
            "worker": self.request.hostname or "",
            "sent_at": timezone.now().isoformat(),
        },
    )
    logger.info("test notification %s sent to user %s", nonce, user_id)


@shared_task(name="dashboard.tasks.clear_expired_sessions")
def clear_expired_sessions() -> None:
    """Periodic (beat): delete expired sessions from the database."""
    call_command("clearsessions")
