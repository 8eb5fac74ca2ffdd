"""The local runner: the engine runs inside this Celery worker process, on this machine's GPU (or CPU), in a scratch
folder of its own (training/workspace.py); checkpoints and the final model go to the artifact store."""

from __future__ import annotations

import logging

from finetune.db import retry_on_lost_connection
from training import services, tracking, workspace
from training.engine import run_training
from training.engine.errors import EngineError
from training.models import TrainingJob
from training.reporting import DjangoReporter

logger = logging.getLogger(__name__)


def run(job: TrainingJob, worker_id: str) -> None:
    """Train the claimed job to the end, recording its outcome (succeeded, cancelled, failed, or handed back)."""
    reporter = DjangoReporter(job.pk, worker_id, store_checkpoints=True).start()
    try:
        # The trackers' settings and secrets (tracking.run_environment) reach the engine through the environment only.
        with workspace.prepare(job) as ws, tracking.environment(tracking.run_environment(job)):
            result = run_training(ws.spec, callbacks=[reporter]).to_dict()
            if not reporter.lease_lost:
                result = tracking.store_tensorboard(job.pk, ws.spec.output_dir, result)
                result = workspace.store_final(job.pk, result)
    except EngineError as exc:  # bad data, bad config, out of memory: the user can fix it, no retry
        reporter.close()
        retry_on_lost_connection(
            services.fail_job, job.pk, str(exc), kind=getattr(exc, "kind", "engine"), worker_id=worker_id
        )
        return
    except Exception as exc:
        reporter.close()
        logger.exception("job %s: unexpected error", job.pk)
        retry_on_lost_connection(
            services.fail_job,
            job.pk,
            f"Internal error ({type(exc).__name__}); see the worker log.",
            worker_id=worker_id,
        )
        return
    reporter.close()
    if reporter.lease_lost:
        logger.warning("job %s: finished after losing its lease; result dropped", job.pk)
        return
    # The run's connection may have died with a PostgreSQL restart during training: reconnect (complete_job is
    # idempotent: a second call finds the job finished and changes nothing).
    retry_on_lost_connection(services.complete_job, job.pk, worker_id, result)
