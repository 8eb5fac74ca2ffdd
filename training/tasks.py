"""Celery entry points for training (thin: each takes an id and calls one service or runner)."""

from __future__ import annotations

import logging
import os
import socket

from celery import shared_task
from django.conf import settings

from finetune.observability import log_context

from . import notifications, services

logger = logging.getLogger(__name__)


@shared_task(name="training.tasks.run_training_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_training_job(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
    """Claim the job (a second delivery finds a live lease and exits) and run it on its backend."""
    worker_id = f"{self.request.hostname or socket.gethostname()}:{os.getpid()}:{self.request.id}"
    with log_context(job_id=job_id):
        if not services.claim_job(job_id, worker_id):
            logger.info("job %s: not claimable by %s (running elsewhere, finished or cancelled)", job_id, worker_id)
            return
        from .models import TrainingJob
        from .runners import get_runner

        job = TrainingJob.objects.select_related("dataset", "base_model", "init_from_job").get(pk=job_id)
        with log_context(user_id=job.owner_id):
            get_runner(job.backend).run(job, worker_id)


@shared_task(name="training.tasks.recover_jobs")
def recover_jobs() -> int:
    """Periodic (beat): re-queue jobs whose worker died (expired lease)."""
    return services.recover_expired_leases()


@shared_task(name="training.tasks.sweep_checkpoints")
def sweep_checkpoints() -> int:
    """Periodic (beat): remove stored checkpoints that no job needs (succeeded or deleted jobs)."""
    return services.sweep_orphan_checkpoints()


@shared_task(name="training.tasks.send_job_email", bind=True, acks_late=True, max_retries=3)
def send_job_email(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
    """Email the job's owner about its outcome (sent once per outcome; SMTP errors are retried)."""
    try:
        notifications.send_job_email(job_id)
    except OSError as exc:  # SMTP down: may work later
        logger.warning("job %s: outcome email failed (%s), retrying", job_id, exc)
        raise self.retry(countdown=settings.NOTIFY_WEBHOOK_RETRY_DELAY_S) from None


@shared_task(name="training.tasks.deliver_job_webhook", bind=True, acks_late=True)
def deliver_job_webhook(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
    """POST the job's outcome to the owner's webhook; retried a couple of times, then only logged."""
    try:
        notifications.deliver_webhook(job_id)
    except notifications.WebhookFailed as exc:
        retries = self.request.retries
        if retries < settings.NOTIFY_WEBHOOK_RETRIES:
            logger.info("job %s: webhook failed (%s), retry %s", job_id, exc, retries + 1)
            raise self.retry(
                countdown=settings.NOTIFY_WEBHOOK_RETRY_DELAY_S * (2**retries),
                max_retries=settings.NOTIFY_WEBHOOK_RETRIES,
            ) from None
        notifications.record_webhook_failure(job_id, str(exc), retries + 1)
