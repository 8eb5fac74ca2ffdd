"""The local runner: the engine runs inside this Celery worker process, on this machine's GPU (or CPU)."""

from __future__ import annotations

import logging

from training import services, specs
from training.engine import run_training
from training.engine.errors import EngineError
from training.models import TrainingJob
from training.reporting import DjangoReporter

logger = logging.getLogger(__name__)


def run(job: TrainingJob, worker_id: str) -> None:
    """Train the claimed job to the end, recording its outcome (succeeded, cancelled, failed, or handed back)."""
    reporter = DjangoReporter(job.pk, worker_id).start()
    try:
        spec = specs.build(job)
        result = run_training(spec, callbacks=[reporter])
    except EngineError as exc:  # bad data, bad config, out of memory: the user can fix it, no retry
        reporter.close()
        services.fail_job(job.pk, str(exc), kind=getattr(exc, "kind", "engine"), worker_id=worker_id)
        return
    except Exception as exc:
        reporter.close()
        logger.exception("job %s: unexpected error", job.pk)
        services.fail_job(job.pk, f"Internal error ({type(exc).__name__}); see the worker log.", worker_id=worker_id)
        return
    reporter.close()
    if reporter.lease_lost:
        logger.warning("job %s: finished after losing its lease; result dropped", job.pk)
        return
    services.complete_job(job.pk, worker_id, result.to_dict())
