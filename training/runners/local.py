"""The local runner: the engine runs inside this Celery worker process, on this machine's GPU (or CPU), in a scratch
folder of its own (training/workspace.py); checkpoints and the final model go to the artifact store.

A job with ``num_processes`` N > 1 runs the engine's command line instead (``python -m training.engine.cli``, which
starts N ranks under torchrun): rank 0's events, read from its stdout, go to the same ``DjangoReporter``; a cancel
(or a lost lease) sends SIGTERM to the launcher, which torchrun passes to every rank (each saves a checkpoint and
stops), and SIGKILL to the launcher's process group after ``DISTRIBUTED_STOP_GRACE_S``. Any rank dying ends the
attempt (torchrun stops the others); the job then resumes from its last stored checkpoint like any other attempt.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from finetune.db import retry_on_lost_connection
from training import services, tracking, workspace
from training.engine import run_training
from training.engine.errors import EngineError
from training.engine.launch import engine_error_from_stderr, rank0_events
from training.engine.spec import TrainingSpec
from training.models import TrainingJob
from training.reporting import DjangoReporter

logger = logging.getLogger(__name__)

DISTRIBUTED_STOP_GRACE_S = 120.0  # a cancelled distributed run's ranks save a checkpoint and exit within this


class ProcessLost(RuntimeError):
    """A rank of a distributed run died without an error of its own (killed, out of host memory): the attempt
    is given back and the job resumes from its last stored checkpoint."""


def run(job: TrainingJob, worker_id: str) -> None:
    """Train the claimed job to the end, recording its outcome (succeeded, cancelled, failed, or handed back)."""
    reporter = DjangoReporter(job.pk, worker_id, store_checkpoints=True).start()
    try:
        # The trackers' settings and secrets (tracking.run_environment) reach the engine through the environment only.
        with workspace.prepare(job) as ws, tracking.environment(tracking.run_environment(job)):
            if ws.spec.hyper.num_processes > 1:
                result = run_distributed(ws.spec, ws.scratch, reporter)
            else:
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
    except ProcessLost as exc:  # a killed rank: another attempt resumes from the last stored checkpoint
        reporter.close()
        logger.warning("job %s: %s", job.pk, exc)
        retry_on_lost_connection(services.release_for_retry, job.pk, worker_id, str(exc))
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


def run_distributed(spec: TrainingSpec, scratch: Path, reporter: DjangoReporter) -> dict[str, Any]:
    """Run ``spec`` on ``spec.hyper.num_processes`` ranks through the engine's command line; rank 0's result.

    Raises an ``EngineError`` (with the engine's ``kind``) for what the user can fix, ``ProcessLost`` when a rank
    died or failed without an engine error (a killed rank breaks the others' collectives)."""
    spec_file = scratch / "distributed-spec.json"
    spec_file.write_text(json.dumps(spec.to_dict()), encoding="utf-8")
    stderr_file = scratch / "distributed-stderr.log"
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "training.engine.cli", str(spec_file), "--spec-resume"]
    with open(stderr_file, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            command, cwd=root, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )
        finished = threading.Event()
        watcher = threading.Thread(
            target=_stop_when_asked, args=(proc, reporter, finished), name=f"stop-{spec.job_id}", daemon=True
        )
        watcher.start()
        result: dict[str, Any] | None = None
        failed = ""  # rank 0's failure message, if it sent one
        try:
            assert proc.stdout is not None
            for event in rank0_events(proc.stdout):
                if event.get("type") == "result":
                    result = event
                else:
                    if event.get("type") == "status" and event.get("status") == "failed":
                        failed = str(event.get("message") or "")
                    reporter.on_event(event)
            code = proc.wait()
        finally:
            finished.set()
            if proc.poll() is None:
                _kill_group(proc)
            watcher.join(timeout=5)
    if result is not None and code in (0, 130):
        return result
    error = engine_error_from_stderr(stderr_file)
    if error is not None:
        raise error
    tail = stderr_file.read_text(encoding="utf-8", errors="replace")[-2000:]
    logger.error("job %s: distributed run ended with exit code %s:\n%s", spec.job_id, code, tail)
    # A killed rank makes the others fail too (their collectives break), in an order that varies: any ending
    # without an engine error gives the attempt back (bounded by TRAINING_MAX_ATTEMPTS).
    raise ProcessLost(f"a training process stopped (exit code {code}{'; ' + failed if failed else ''})")


def _stop_when_asked(proc: subprocess.Popen[str], reporter: DjangoReporter, finished: threading.Event) -> None:
    """Cancel (or lost lease): SIGTERM to the launcher (torchrun passes it to every rank), SIGKILL after the grace."""
    while not finished.wait(1.0):
        if proc.poll() is not None:
            return
        if reporter.should_stop():
            proc.send_signal(signal.SIGTERM)
            if finished.wait(DISTRIBUTED_STOP_GRACE_S):
                return
            _kill_group(proc)
            return


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
