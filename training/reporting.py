"""DjangoReporter: the engine callback that stores events, pushes them to sockets, renews the lease and relays
cancellation. The Modal path posts the same events to the internal endpoint, which calls the same service."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections

from finetune.db import retry_on_lost_connection

from . import services

logger = logging.getLogger(__name__)


class DjangoReporter:
    """Engine callback (on_event / should_stop) for a job running in this process."""

    def __init__(self, job_id: int, worker_id: str, *, store_checkpoints: bool = False) -> None:
        self.job_id = job_id
        self.worker_id = worker_id
        self.store_checkpoints = store_checkpoints  # upload each checkpoint to the artifact store, then record it
        self._stop = threading.Event()
        self._lease_lost = threading.Event()
        self._last_check = 0.0
        self._heartbeat = threading.Thread(target=self._beat, name=f"lease-{job_id}", daemon=True)

    # -- lifecycle
    def start(self) -> DjangoReporter:
        self._heartbeat.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._heartbeat.join(timeout=5)

    @property
    def lease_lost(self) -> bool:
        return self._lease_lost.is_set()

    def _beat(self) -> None:
        try:
            self._beat_until_stopped()
        finally:
            connections.close_all()  # this thread's own database connection ends with it (one per job otherwise)

    def _beat_until_stopped(self) -> None:
        interval = settings.TRAINING_HEARTBEAT_SECONDS
        while not self._stop.wait(interval):
            try:
                if not services.renew_lease(self.job_id, self.worker_id):
                    logger.warning("job %s: lease lost by %s", self.job_id, self.worker_id)
                    self._lease_lost.set()
                    return
                services.enforce_running_quota(self.job_id)  # asks for a cancel, seen by should_stop
            except Exception as exc:  # the database may blink; the next beat retries
                logger.warning("job %s: heartbeat failed: %s", self.job_id, exc)
                close_old_connections()

    # -- engine callback protocol
    def on_event(self, event: Any) -> None:
        payload = event.to_dict() if hasattr(event, "to_dict") else dict(event)
        if payload.get("type") == "checkpoint" and self.store_checkpoints:
            self._store_checkpoint(int(payload.get("step") or 0), str(payload.get("path") or ""))
            return
        try:  # a PostgreSQL restart: reconnect and store it (the run waits a little rather than lose points)
            retry_on_lost_connection(services.record_event, self.job_id, payload)
        except Exception:
            logger.exception("job %s: could not record %s event", self.job_id, payload.get("type"))

    def _store_checkpoint(self, step: int, path: str) -> None:
        """Upload first, then record: the job names only a checkpoint that is whole in the store. The run waits
        for the upload (the engine may rotate the folder away right after this event)."""
        from training import workspace

        try:
            stored = workspace.store_checkpoint(self.job_id, path)
        except Exception as exc:  # storage down: training goes on; a resume starts from the previous stored one
            logger.exception("job %s: could not store the checkpoint of step %s", self.job_id, step)
            retry_on_lost_connection(
                services.record_event,
                self.job_id,
                {"type": "log", "level": "warning", "line": f"checkpoint of step {step} not stored: {_plain(exc)}"},
            )
            return
        retry_on_lost_connection(services.record_checkpoint, self.job_id, self.worker_id, step, stored)

    def should_stop(self) -> bool:
        if self._lease_lost.is_set():
            return True
        now = time.monotonic()
        if now - self._last_check < 0.5:
            return False
        self._last_check = now
        try:
            return services.should_stop(self.job_id, self.worker_id)
        except Exception:
            close_old_connections()  # a dead connection (PostgreSQL restarted) is replaced on the next query
            return False


def _plain(exc: BaseException) -> str:
    """An error for the job's log without the host paths an OSError carries ("No space left on device")."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
