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


# --- Job notifications (issue 7): email and webhook when a job succeeds or fails ----------------------------------
@shared_task(name="dashboard.tasks.send_job_email", bind=True, acks_late=True, max_retries=3)
def send_job_email(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
    """Email the job's owner about its outcome (sent once per outcome; SMTP errors are retried)."""
    from django.conf import settings

    from . import notifications

    try:
        notifications.send_job_email(job_id)
    except OSError as exc:  # SMTP down: may work later
        logger.warning("job %s: outcome email failed (%s), retrying", job_id, exc)
        raise self.retry(countdown=settings.NOTIFY_WEBHOOK_RETRY_DELAY_S) from None


@shared_task(name="dashboard.tasks.deliver_job_webhook", bind=True, acks_late=True)
def deliver_job_webhook(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
    """POST the job's outcome to the owner's webhook; retried a couple of times, then only logged."""
    from django.conf import settings

    from . import notifications

    try:
        notifications.deliver_webhook(job_id)
    except notifications.WebhookFailed as exc:
        retries = self.request.retries
        if retries < settings.NOTIFY_WEBHOOK_RETRIES:
            logger.info("job %s: webhook failed (%s), retry %s", job_id, exc, retries + 1)
            raise self.retry(countdown=settings.NOTIFY_WEBHOOK_RETRY_DELAY_S * (2**retries),
                             max_retries=settings.NOTIFY_WEBHOOK_RETRIES) from None
        notifications.record_webhook_failure(job_id, str(exc), retries + 1)
