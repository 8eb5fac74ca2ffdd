"""Celery entry points for training (thin: each takes an id and calls one service or runner)."""

from __future__ import annotations

import logging
import os
import socket

from celery import shared_task

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="training.tasks.run_training_job", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_training_job(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
    """Claim the job (a second delivery finds a live lease and exits) and run it on its backend."""
    worker_id = f"{self.request.hostname or socket.gethostname()}:{os.getpid()}:{self.request.id}"
    if not services.claim_job(job_id, worker_id):
        logger.info("job %s: not claimable by %s (running elsewhere, finished or cancelled)", job_id, worker_id)
        return
    from .models import TrainingJob
    from .runners import get_runner

    job = TrainingJob.objects.select_related("dataset", "base_model", "init_from_job").get(pk=job_id)
    get_runner(job.backend).run(job, worker_id)


@shared_task(name="training.tasks.recover_jobs")
def recover_jobs() -> int:
    """Periodic (beat): re-queue jobs whose worker died (expired lease)."""
    return services.recover_expired_leases()
