"""What operators see of the training fleet: the queue in the order workers take it, and each Celery worker's health
(the inspect API). Shown by the admin's queue page (training/admin.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import current_app as app
from django.conf import settings
from django.utils import timezone

from .models import TrainingJob

logger = logging.getLogger(__name__)
TRAINING_TASK = "training.tasks.run_training_job"


# --- queue ----------------------------------------------------------------------------------------------------------
def worker_node(lease_owner: str) -> str:
    """The Celery node holding a lease (`node@host:pid:task id` -> `node@host`; `modal:<call>` -> `modal`)."""
    if not lease_owner:
        return ""
    if lease_owner.startswith("modal:"):
        return "modal"
    return lease_owner.split(":", 1)[0]


def age_seconds(since: datetime | None, now: datetime | None = None) -> float | None:
    """Seconds since ``since`` (None stays None)."""
    if since is None:
        return None
    return max(0.0, ((now or timezone.now()) - since).total_seconds())


def format_age(seconds: float | None) -> str:
    """`42s`, `5m 03s`, `2h 10m`, `3d 4h`."""
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


@dataclass
class QueueSnapshot:
    """Queued jobs in the order workers take them, and running jobs grouped per worker node."""

    queued: list[Any]
    running: dict[str, list[Any]]
    now: datetime = field(default_factory=timezone.now)

    @property
    def running_count(self) -> int:
        return sum(len(v) for v in self.running.values())


def queue_snapshot() -> QueueSnapshot:
    """The training queue now. Queued (and recovering) jobs oldest first, as the FIFO broker delivers them; each job
    gets ``age_s`` (time waiting, or time since its current attempt started) and ``node``."""
    now = timezone.now()
    base = TrainingJob.objects.select_related("owner", "base_model").only(
        "id",
        "name",
        "status",
        "phase",
        "backend",
        "modal_gpu",
        "method",
        "weights",
        "attempts",
        "created",
        "started",
        "updated",
        "lease_owner",
        "lease_expires",
        "heartbeat_at",
        "progress",
        "current_step",
        "total_steps",
        "attempt_history",
        "cancel_requested",
        "owner__username",
        "base_model__name",
    )
    queued = list(
        base.filter(status__in=[TrainingJob.Status.QUEUED, TrainingJob.Status.RECOVERING]).order_by("created", "id")
    )
    for job in queued:
        job.age_s = age_seconds(job.created, now)
        job.age = format_age(job.age_s)
        job.node = ""
    running: dict[str, list[Any]] = {}
    for job in base.filter(status__in=[TrainingJob.Status.STARTING, TrainingJob.Status.RUNNING]).order_by(
        "started", "id"
    ):
        attempt_started = None
        if job.attempt_history:
            try:
                attempt_started = datetime.fromisoformat(job.attempt_history[-1]["started"])
            except (KeyError, TypeError, ValueError):
                attempt_started = None
        job.age_s = age_seconds(attempt_started or job.started, now)
        job.age = format_age(job.age_s)
        job.node = worker_node(job.lease_owner) or "(no lease)"
        job.heartbeat_age = format_age(age_seconds(job.heartbeat_at, now))
        job.lease_expired = bool(job.lease_expires and job.lease_expires < now)
        running.setdefault(job.node, []).append(job)
    return QueueSnapshot(queued=queued, running=running, now=now)


# --- workers --------------------------------------------------------------------------------------------------------
@dataclass
class WorkerInfo:
    """One Celery node as the inspect API reports it."""

    name: str
    alive: bool
    queues: list[str]
    active: list[dict[str, Any]]
    pid: int | None = None
    concurrency: int | None = None
    uptime_s: float | None = None
    tasks_done: int | None = None

    @property
    def uptime(self) -> str:
        return format_age(self.uptime_s)


@dataclass
class WorkerHealth:
    """Every node that answered, and whether the broker could be asked at all."""

    workers: list[WorkerInfo]
    error: str = ""
    elapsed_s: float = 0.0


def _job_id_of(task: dict[str, Any]) -> int | None:
    if task.get("name") != TRAINING_TASK:
        return None
    args = task.get("args")
    if isinstance(args, list | tuple) and args:
        try:
            return int(args[0])
        except (TypeError, ValueError):
            return None
    return None


def count_workers(timeout: float = 1.0) -> int:
    """How many Celery workers answer a broadcast ping within `timeout` seconds."""
    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            replies = app.control.ping(timeout=timeout, connection=conn) or []
    except Exception as exc:
        logger.warning("health: worker ping failed: %s", exc)
        return 0
    return len(replies)


def worker_health(timeout: float = 1.0) -> WorkerHealth:
    """Ask every Celery worker (broadcast, ``timeout`` seconds): ping, active tasks, stats and queues. The four
    broadcasts run side by side, so the page waits about ``timeout`` once, not four times."""
    started = time.monotonic()

    def ask(method: str) -> Callable[[], dict[str, Any]]:
        def call() -> dict[str, Any]:
            with app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
                inspector = app.control.inspect(timeout=timeout, connection=conn)
                return getattr(inspector, method)() or {}

        return call

    methods = ("ping", "active", "stats", "active_queues")
    try:
        with ThreadPoolExecutor(max_workers=len(methods)) as pool:
            futures = {m: pool.submit(ask(m)) for m in methods}
            replies = {m: f.result() for m, f in futures.items()}
    except Exception as exc:  # the broker is down: say so on the page instead of failing it
        logger.warning("worker health: inspect failed: %s", exc)
        return WorkerHealth(
            workers=[], error=f"Could not ask the workers: {exc}", elapsed_s=time.monotonic() - started
        )
    names = sorted(set().union(*(r.keys() for r in replies.values())))
    workers = []
    for name in names:
        stats = replies["stats"].get(name) or {}
        pool = stats.get("pool") or {}
        active = []
        for task in replies["active"].get(name) or []:
            active.append(
                {
                    "id": task.get("id", ""),
                    "name": task.get("name", ""),
                    "job_id": _job_id_of(task),
                    "started": task.get("time_start"),
                    "args": task.get("args"),
                }
            )
        total = stats.get("total") or {}
        workers.append(
            WorkerInfo(
                name=name,
                alive=name in replies["ping"],
                queues=sorted(q.get("name", "") for q in replies["active_queues"].get(name) or []),
                active=active,
                pid=stats.get("pid"),
                concurrency=pool.get("max-concurrency"),
                uptime_s=stats.get("uptime"),
                tasks_done=sum(total.values()) if isinstance(total, dict) else None,
            )
        )
    return WorkerHealth(workers=workers, elapsed_s=time.monotonic() - started)
