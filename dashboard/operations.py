"""What operators see in the admin: the training queue, worker health (Celery's inspect API) and storage usage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Sum
from django.utils import timezone

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
    from training.models import TrainingJob

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


def worker_health(timeout: float = 1.0) -> WorkerHealth:
    """Ask every Celery worker (broadcast, ``timeout`` seconds): ping, active tasks, stats and queues. The four
    broadcasts run side by side, so the page waits about ``timeout`` once, not four times."""
    from finetune.celery import app

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


# --- storage --------------------------------------------------------------------------------------------------------
def storage_usage() -> dict[str, Any]:
    """Storage per user and in total, from the sizes recorded in the database: dataset files, exported artifacts,
    and runs (stored checkpoints and produced models in the artifact store). `runs_unknown` stays 0 (kept for the
    page's shape: nothing is walked on disk any more)."""
    from accounts.models import User
    from datasets_app.models import DatasetFile
    from training.models import TrainingJob

    rows: dict[int, dict[str, Any]] = {}

    def row(user_id: int) -> dict[str, Any]:
        return rows.setdefault(
            user_id,
            {
                "user_id": user_id,
                "datasets_bytes": 0,
                "datasets": 0,
                "exports_bytes": 0,
                "runs_bytes": 0,
                "runs": 0,
                "runs_unknown": 0,
            },
        )

    for r in DatasetFile.objects.values("dataset__owner_id").annotate(
        n=Sum("size_bytes"), d=Count("dataset", distinct=True)
    ):
        row(r["dataset__owner_id"]).update(datasets_bytes=int(r["n"] or 0), datasets=r["d"])
    try:
        from models_app.models import ModelExport

        for r in ModelExport.objects.values("owner_id").annotate(n=Sum("size_bytes")):
            row(r["owner_id"])["exports_bytes"] = int(r["n"] or 0)
    except Exception as exc:  # the exports table belongs to the models app; never fail the page over it
        logger.warning("storage usage: exports not counted: %s", exc)
    # Runs: what jobs keep in the artifact store (newest checkpoints of unfinished jobs, the models they produced);
    # counted from the recorded sizes, no folder walked.
    for r in TrainingJob.objects.exclude(checkpoint_key="").values("owner_id").annotate(
            n=Sum("checkpoint_size"), c=Count("id")):
        row(r["owner_id"]).update(runs_bytes=int(r["n"] or 0), runs=int(r["c"] or 0))
    try:
        from models_app.models import FineTunedModel

        for r in FineTunedModel.objects.exclude(artifact_key="").values("owner_id").annotate(
                n=Sum("artifact_size"), c=Count("id")):
            target = row(r["owner_id"])
            target["runs_bytes"] += int(r["n"] or 0)
            target["runs"] += int(r["c"] or 0)
    except Exception as exc:
        logger.warning("storage usage: models not counted: %s", exc)
    names = dict(User.objects.filter(pk__in=rows).values_list("pk", "username"))
    quotas = {u.pk: int(u.quotas().get("storage_bytes") or 0) for u in User.objects.filter(pk__in=rows)}
    users = []
    for user_id, r in rows.items():
        r["username"] = names.get(user_id, f"#{user_id}")
        r["total_bytes"] = r["datasets_bytes"] + r["exports_bytes"] + r["runs_bytes"]
        r["quota_bytes"] = quotas.get(user_id, 0)
        r["quota_pct"] = round(100.0 * r["datasets_bytes"] / r["quota_bytes"], 1) if r["quota_bytes"] else None
        users.append(r)
    users.sort(key=lambda r: r["total_bytes"], reverse=True)
    totals = {
        k: sum(r[k] for r in users)
        for k in ("datasets_bytes", "exports_bytes", "runs_bytes", "total_bytes", "datasets", "runs", "runs_unknown")
    }
    return {"users": users, "totals": totals}
