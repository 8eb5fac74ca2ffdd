"""Dashboard workflows."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import User
from finetune.exceptions import ServiceError

from . import tasks

T = TypeVar("T")


def request_test_notification(user_id: int) -> str:
    """Enqueue a task that sends the user a test notification; returns its nonce."""
    nonce = secrets.token_hex(8)
    transaction.on_commit(lambda: tasks.send_test_notification.apply_async(args=[user_id, nonce], queue="default"))
    return nonce


# --- statistics and analytics, always scoped to one user -----------------------------------------------------------
def cached_for_user(kind: str, user_id: int, ttl_s: int, build: Callable[[], T]) -> T:
    """`build()`, kept in the shared cache for `ttl_s` seconds per user (a polling dashboard then costs one cache
    read instead of a dozen queries); `ttl_s` 0 always builds."""
    if ttl_s <= 0:
        return build()
    key = f"dashboard:{kind}:{user_id}"
    value = cache.get(key)
    if value is None:
        value = build()
        cache.set(key, value, ttl_s)
    return value


MAX_ANALYTICS_DAYS = 365
RECENT_JOBS = 10


def _final_loss(result: dict[str, Any] | None) -> float | None:
    metrics = (result or {}).get("metrics") or {}
    value = metrics.get("train_loss_last")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


JOB_ROW_FIELDS = (
    "name",
    "status",
    "phase",
    "method",
    "weights",
    "backend",
    "progress",
    "current_step",
    "total_steps",
    "eta_s",
    "created",
    "started",
    "finished",
    "result",
    "error",
)


def _job_row(job: Any) -> dict[str, Any]:
    return {
        "id": job.pk,
        "name": job.name,
        "status": job.status,
        "phase": job.phase,
        "method": job.method,
        "weights": job.weights,
        "backend": job.backend,
        "progress": round(float(job.progress), 4),
        "current_step": job.current_step,
        "total_steps": job.total_steps,
        "eta_s": job.eta_s,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "final_loss": _final_loss(job.result),
        "error": job.error,
    }


def _rate(succeeded: int, failed: int) -> float | None:
    return round(succeeded / (succeeded + failed), 4) if succeeded + failed else None


def stats(user: User) -> dict[str, Any]:
    """The home page: counts, jobs by status, running jobs with progress, recent jobs, success rate, quota usage."""
    from accounts import quotas
    from datasets_app.models import Dataset
    from models_app.models import FineTunedModel
    from training.models import TrainingJob

    jobs = TrainingJob.objects.filter(owner=user)
    by_status = {s: 0 for s in TrainingJob.Status.values}
    for row in jobs.values("status").annotate(n=Count("id")):
        by_status[row["status"]] = row["n"]
    datasets = Dataset.objects.filter(owner=user).aggregate(
        lineages=Count("lineage", distinct=True), versions=Count("id")
    )
    rows = jobs.only(*JOB_ROW_FIELDS)
    running = rows.filter(status__in=TrainingJob.ACTIVE).order_by("created", "id")
    return {
        "datasets": datasets["lineages"],
        "dataset_versions": datasets["versions"],
        "models": FineTunedModel.objects.filter(owner=user).count(),
        "jobs": {"total": sum(by_status.values()), "by_status": by_status},
        "running_jobs": [_job_row(j) for j in running[:50]],
        "recent_jobs": [_job_row(j) for j in rows.order_by("-created", "-id")[:RECENT_JOBS]],
        "success_rate": _rate(by_status["succeeded"], by_status["failed"]),
        "quota": quotas.summary(user, active=sum(by_status[s] for s in TrainingJob.ACTIVE)),
    }


def parse_days(raw: str | None) -> int:
    """The analytics window in days (1..365, default 30); a clear 400 otherwise."""
    if raw in (None, ""):
        return 30
    try:
        days = int(str(raw))
    except ValueError:
        raise ServiceError(f"days must be a whole number of days, got '{raw}'.", field="days") from None
    if not 1 <= days <= MAX_ANALYTICS_DAYS:
        raise ServiceError(f"days must be between 1 and {MAX_ANALYTICS_DAYS}, got {days}.", field="days")
    return days


def analytics(user: User, *, days: int = 30) -> dict[str, Any]:
    """Charts over the last ``days`` days (UTC dates, today included): jobs created per day (and how many of them
    succeeded/failed), training hours per day (compute time of jobs finished that day), the success rate of jobs
    finished in the window and the final train/eval loss by method of the jobs that succeeded in it."""
    from training.models import TrainingJob

    today = timezone.now().astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, time.min, tzinfo=UTC)
    jobs = TrainingJob.objects.filter(owner=user)
    dates = [first + timedelta(days=i) for i in range(days)]

    created: dict[date, dict[str, int]] = {d: {"count": 0, "succeeded": 0, "failed": 0} for d in dates}
    per_day = (
        jobs.filter(created__gte=since)
        .annotate(day=TruncDate("created", tzinfo=UTC))
        .values("day")
        .annotate(
            n=Count("id"), ok=Count("id", filter=Q(status="succeeded")), bad=Count("id", filter=Q(status="failed"))
        )
    )
    for row in per_day:
        if row["day"] in created:
            created[row["day"]] = {"count": row["n"], "succeeded": row["ok"], "failed": row["bad"]}

    finished = jobs.filter(finished__gte=since, status__in=TrainingJob.FINISHED)
    seconds: dict[date, float] = {d: 0.0 for d in dates}
    for row in (
        finished.annotate(day=TruncDate("finished", tzinfo=UTC)).values("day").annotate(s=Sum("compute_seconds"))
    ):
        if row["day"] in seconds:
            seconds[row["day"]] = float(row["s"] or 0.0)

    outcome = finished.aggregate(
        ok=Count("id", filter=Q(status="succeeded")), bad=Count("id", filter=Q(status="failed"))
    )
    by_method: dict[str, dict[str, list[float]]] = {}
    for method, result in finished.filter(status="succeeded").values_list("method", "result"):
        metrics = (result or {}).get("metrics") or {}
        entry = by_method.setdefault(method, {"train": [], "eval": [], "n": []})
        entry["n"].append(1.0)
        for key, name in (("train_loss_last", "train"), ("eval_loss_after", "eval")):
            value = metrics.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                entry[name].append(float(value))

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    return {
        "days": days,
        "since": first.isoformat(),
        "jobs_per_day": [{"date": d.isoformat(), **created[d]} for d in dates],
        "training_hours_per_day": [{"date": d.isoformat(), "hours": round(seconds[d] / 3600.0, 4)} for d in dates],
        "jobs_created": sum(v["count"] for v in created.values()),
        "jobs_finished": {"succeeded": outcome["ok"], "failed": outcome["bad"]},
        "training_hours": round(sum(seconds.values()) / 3600.0, 4),
        "success_rate": _rate(outcome["ok"], outcome["bad"]),
        "final_loss_by_method": [
            {
                "method": m,
                "jobs": len(v["n"]),
                "mean_final_train_loss": mean(v["train"]),
                "mean_final_eval_loss": mean(v["eval"]),
            }
            for m, v in sorted(by_method.items())
        ],
    }
