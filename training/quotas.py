"""Training's side of the quotas: it counts its own usage (active jobs, GPU seconds per backend and Modal spend this
month) and asks accounts.quotas, which holds the limits and the checks, whether a job may be created, started or go on
running. A job's compute counts in the month it finished; a running job's elapsed time counts now."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from accounts import quotas
from accounts.models import User

from . import estimate, pricing
from .models import TrainingJob

logger = logging.getLogger(__name__)
BACKENDS = ("local", "modal")


def _open_attempt(job: TrainingJob) -> dict[str, Any] | None:
    history = job.attempt_history or []
    if history and "ended" not in history[-1] and history[-1].get("started"):
        return dict(history[-1])
    return None


def _elapsed_s(job: TrainingJob, now: datetime) -> float:
    """Seconds of the attempt now running (0 when none runs)."""
    attempt = _open_attempt(job)
    if attempt is None:
        return 0.0
    try:
        started = datetime.fromisoformat(attempt["started"])
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, (now - started).total_seconds())


@dataclass
class Totals:
    """GPU seconds per backend and Modal spend (USD) this month."""

    seconds: dict[str, float]
    cost_usd: float


def monthly_totals(user_id: int, now: datetime, *, exclude_job: int | None = None, reserve: bool = False) -> Totals:
    """This month's totals: finished jobs (their recorded compute_seconds/cost_usd) plus active ones (earlier attempts
    + the running attempt's elapsed time; with ``reserve``, at least the estimate recorded when that attempt started,
    so parallel starts cannot overbook the budget)."""
    start = quotas.month_start(now)
    finished = TrainingJob.objects.filter(owner_id=user_id, status__in=TrainingJob.FINISHED, finished__gte=start)
    seconds = {b: 0.0 for b in BACKENDS}
    cost = 0.0
    for row in finished.values("backend").annotate(s=Sum("compute_seconds"), c=Sum("cost_usd")):
        seconds[row["backend"]] = seconds.get(row["backend"], 0.0) + float(row["s"] or 0.0)
        if row["backend"] == "modal":
            cost += float(row["c"] or 0.0)
    active = TrainingJob.objects.filter(owner_id=user_id, status__in=TrainingJob.ACTIVE)
    if exclude_job is not None:
        active = active.exclude(pk=exclude_job)
    fields = ("backend", "modal_gpu", "attempt_history", "compute_seconds", "cost_usd", "hyperparameters")
    for job in active.only(*fields):
        running = _elapsed_s(job, now) * estimate.processes(job.hyperparameters or {})  # GPU time: every GPU counts
        if reserve:
            attempt = _open_attempt(job) or {}
            running = max(running, float(attempt.get("reserved_s") or 0.0))
        seconds[job.backend] = seconds.get(job.backend, 0.0) + float(job.compute_seconds) + running
        if job.backend == "modal":
            cost += float(job.cost_usd) + pricing.modal_cost_usd(job.modal_gpu, running)
    return Totals(seconds=seconds, cost_usd=cost)


def free_slots(user_id: int) -> int:
    """How many more jobs the user may have active now under the concurrent-jobs limit."""
    return max(int(quotas.limits_of(user_id)["concurrent_jobs"]) - active_jobs(user_id), 0)


def active_jobs(user_id: int, *, exclude_job: int | None = None) -> int:
    """Jobs queued, starting, running or recovering."""
    qs = TrainingJob.objects.filter(owner_id=user_id, status__in=TrainingJob.ACTIVE)
    if exclude_job is not None:
        qs = qs.exclude(pk=exclude_job)
    return qs.count()


def usage(user_id: int, now: datetime, known: dict[str, Any]) -> dict[str, Any]:
    """The usage source training registers with accounts.quotas (see TrainingConfig.ready)."""
    totals = monthly_totals(user_id, now)
    return {
        "concurrent_jobs": known["concurrent_jobs"] if "concurrent_jobs" in known else active_jobs(user_id),
        "gpu_minutes_local_this_month": round(totals.seconds["local"] / 60.0, 2),
        "gpu_minutes_modal_this_month": round(totals.seconds["modal"] / 60.0, 2),
        "modal_spend_usd_this_month": round(totals.cost_usd, 4),
    }


def estimated_cost(job: TrainingJob) -> tuple[float, float]:
    """(GPU seconds, USD) the whole job is expected to take, from training.estimate (0, 0 when it cannot tell): a
    run on ``num_processes`` GPUs counts each of them."""
    try:
        est = estimate.estimate(
            dataset=job.dataset,
            base_model=job.base_model,
            method=job.method,
            weights=job.weights,
            hyper=job.hyperparameters,
            backend=job.backend,
        )
    except Exception as exc:  # an estimate is advisory: never block a job because it failed
        logger.warning("job %s: no estimate for the quota check: %s", job.pk, exc)
        return 0.0, 0.0
    gpus = estimate.processes(job.hyperparameters or {})
    if job.backend == "modal":
        gpu = est.get("modal", {}).get(job.modal_gpu) or {}
        return float(gpu.get("duration_s") or 0.0) * gpus, float(gpu.get("cost_usd") or 0.0)
    return float(est.get("duration_s") or 0.0) * gpus, 0.0


def running_over_quota(job: TrainingJob) -> quotas.QuotaExceeded | None:
    """For a job that is running: its backend's GPU minutes (or Modal spend) this month, its own running attempt
    included, have reached the limit (an estimate can be short, and an operator can lower a quota mid-run)."""
    now = timezone.now()
    totals = monthly_totals(job.owner_id, now)
    try:
        quotas.check_budget(
            quotas.limits_of(job.owner_id),
            job.backend,
            used_seconds=totals.seconds[job.backend],
            used_usd=totals.cost_usd,
            now=now,
        )
    except quotas.QuotaExceeded as exc:
        return exc
    return None


def check_can_create_job(
    user: User, backend: str, *, estimate_s: float = 0.0, estimate_usd: float = 0.0, concurrent: bool = True
) -> None:
    """Refuse a new job (QuotaExceeded, 429) over the concurrent-jobs limit (unless ``concurrent`` is False: a job
    created waiting for a slot) or with this month's GPU minutes / Modal spend for ``backend`` used up (or not enough
    left for the estimate). Call it holding ``quotas.lock_user``."""
    limits = quotas.limits_of(user.pk)  # an operator may have just changed them
    now = timezone.now()
    if concurrent:
        quotas.check_concurrent(limits, active_jobs(user.pk))
    totals = monthly_totals(user.pk, now, reserve=True)
    quotas.check_budget(
        limits,
        backend,
        used_seconds=totals.seconds.get(backend, 0.0),
        used_usd=totals.cost_usd,
        need_s=estimate_s,
        need_usd=estimate_usd,
        now=now,
    )


def check_can_start(job: TrainingJob) -> float:
    """At claim time: refuse (QuotaExceeded) a job whose backend's GPU minutes or Modal spend this month, counting
    the other running jobs' reservations, would be exceeded by its estimate. Returns the seconds to reserve for it.
    Call it holding ``quotas.lock_user`` for the job's owner."""
    limits = quotas.limits_of(job.owner_id)
    now = timezone.now()
    est_s, est_usd = estimated_cost(job)
    # What earlier attempts already used is in job.compute_seconds; only the rest is still needed.
    need_s = max(0.0, est_s - float(job.compute_seconds))
    need_usd = max(0.0, est_usd - float(job.cost_usd))
    totals = monthly_totals(job.owner_id, now, exclude_job=job.pk, reserve=True)
    used_s = totals.seconds.get(job.backend, 0.0) + float(job.compute_seconds)
    used_usd = totals.cost_usd + (float(job.cost_usd) if job.backend == "modal" else 0.0)
    quotas.check_budget(
        limits, job.backend, used_seconds=used_s, used_usd=used_usd, need_s=need_s, need_usd=need_usd, now=now
    )
    return need_s
