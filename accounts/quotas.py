"""Per-user quotas: current usage and the checks made at the moment of use (job create, job start).

Limits come from ``User.quotas()`` (settings.DEFAULT_QUOTAS overridden per user by operators). Storage is checked by
datasets_app.services on upload. Monthly figures run from the first of the month (UTC); a job's compute counts in the
month it finished, a running job's elapsed time counts now. The checks must run inside a transaction that holds the
user's row lock (``lock_user``), so parallel creates and starts are counted one after the other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from finetune.exceptions import ServiceError

from .models import User

if TYPE_CHECKING:
    from training.models import TrainingJob

logger = logging.getLogger(__name__)
BACKENDS = ("local", "modal")


class QuotaExceeded(ServiceError):
    """A quota would be exceeded; the message names the limit, the usage and when it resets."""

    status_code = 429

    def __init__(self, message: str, *, quota: str, used: float, limit: float, resets_at: datetime | None) -> None:
        super().__init__(message)
        self.quota, self.used, self.limit, self.resets_at = quota, used, limit, resets_at


def month_start(now: datetime | None = None) -> datetime:
    """00:00 UTC on the first day of the current month."""
    now = (now or timezone.now()).astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_reset(now: datetime | None = None) -> datetime:
    """When the monthly quotas reset: 00:00 UTC on the first day of next month."""
    start = month_start(now)
    return (start + timedelta(days=32)).replace(day=1)


def _fmt_reset(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def lock_user(user_id: int) -> None:
    """Take the user's row lock (inside a transaction): quota checks and the rows they count are serialized."""
    User.objects.select_for_update().filter(pk=user_id).first()


# --- usage --------------------------------------------------------------------------------------------------------
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


def _price_per_s(job: TrainingJob) -> float:
    return float(settings.MODAL_GPU_PRICES_USD_PER_HOUR.get(job.modal_gpu, 0.0)) / 3600.0


@dataclass
class _Totals:
    seconds: dict[str, float]
    cost_usd: float


def _monthly_totals(user_id: int, now: datetime, *, exclude_job: int | None = None, reserve: bool = False) -> _Totals:
    """GPU seconds per backend and Modal spend this month: finished jobs (their recorded compute_seconds/cost_usd)
    plus active ones (earlier attempts + the running attempt's elapsed time; with ``reserve``, at least the estimate
    recorded when that attempt started, so parallel starts cannot overbook the budget)."""
    from training.models import TrainingJob

    start = month_start(now)
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
    for job in active.only("backend", "modal_gpu", "attempt_history", "compute_seconds", "cost_usd"):
        running = _elapsed_s(job, now)
        if reserve:
            attempt = _open_attempt(job) or {}
            running = max(running, float(attempt.get("reserved_s") or 0.0))
        seconds[job.backend] = seconds.get(job.backend, 0.0) + float(job.compute_seconds) + running
        if job.backend == "modal":
            cost += float(job.cost_usd) + running * _price_per_s(job)
    return _Totals(seconds=seconds, cost_usd=cost)


def active_jobs(user_id: int) -> int:
    """Jobs queued, starting, running or recovering."""
    from training.models import TrainingJob

    return TrainingJob.objects.filter(owner_id=user_id, status__in=TrainingJob.ACTIVE).count()


def storage_bytes(user_id: int) -> int:
    """Bytes the user's datasets take (what the storage quota counts)."""
    from datasets_app.models import DatasetFile

    return int(DatasetFile.objects.filter(dataset__owner_id=user_id).aggregate(n=Sum("size_bytes"))["n"] or 0)


def usage(user: User, *, active: int | None = None) -> dict[str, Any]:
    """Current usage against each quota (keys mirror ``User.quotas()``), with the monthly period. `active`: the
    number of active jobs when the caller already counted them."""
    now = timezone.now()
    totals = _monthly_totals(user.pk, now)
    return {
        "concurrent_jobs": active_jobs(user.pk) if active is None else active,
        "storage_bytes": storage_bytes(user.pk),
        "gpu_minutes_local_this_month": round(totals.seconds["local"] / 60.0, 2),
        "gpu_minutes_modal_this_month": round(totals.seconds["modal"] / 60.0, 2),
        "modal_spend_usd_this_month": round(totals.cost_usd, 4),
        "period_start": month_start(now).isoformat(),
        "resets_at": next_reset(now).isoformat(),
    }


def summary(user: User, *, active: int | None = None) -> dict[str, Any]:
    """Quotas, usage and what is left, for the UI (`active`: see usage)."""
    limits = user.quotas()
    used = usage(user, active=active)
    pairs = {
        "concurrent_jobs": "concurrent_jobs",
        "storage_bytes": "storage_bytes",
        "gpu_minutes_local_per_month": "gpu_minutes_local_this_month",
        "gpu_minutes_modal_per_month": "gpu_minutes_modal_this_month",
        "modal_spend_usd_per_month": "modal_spend_usd_this_month",
    }
    remaining = {k: round(max(0.0, float(limits[k]) - float(used[u])), 4) for k, u in pairs.items() if k in limits}
    return {"quotas": limits, "usage": used, "remaining": remaining, "resets_at": used["resets_at"]}


# --- estimates ----------------------------------------------------------------------------------------------------
def estimated_cost(job: TrainingJob) -> tuple[float, float]:
    """(seconds, USD) the whole job is expected to take, from training.estimate (0, 0 when it cannot tell)."""
    from training import estimate

    try:
        est = estimate.estimate(dataset=job.dataset, base_model=job.base_model, method=job.method,
                                weights=job.weights, hyper=job.hyperparameters, backend=job.backend)
    except Exception as exc:  # an estimate is advisory: never block a job because it failed
        logger.warning("job %s: no estimate for the quota check: %s", job.pk, exc)
        return 0.0, 0.0
    if job.backend == "modal":
        gpu = est.get("modal", {}).get(job.modal_gpu) or {}
        return float(gpu.get("duration_s") or 0.0), float(gpu.get("cost_usd") or 0.0)
    return float(est.get("duration_s") or 0.0), 0.0


# --- checks -------------------------------------------------------------------------------------------------------
def _check_concurrent(user: User, limits: dict[str, Any], *, exclude_job: int | None = None) -> None:
    from training.models import TrainingJob

    limit = int(limits["concurrent_jobs"])
    qs = TrainingJob.objects.filter(owner_id=user.pk, status__in=TrainingJob.ACTIVE)
    if exclude_job is not None:
        qs = qs.exclude(pk=exclude_job)
    n = qs.count()
    if n >= limit:
        raise QuotaExceeded(
            f"Concurrent jobs quota reached: you already have {n} active training job(s) and your limit is {limit}. "
            "Wait for one to finish or cancel it (ask an operator to raise the limit).",
            quota="concurrent_jobs", used=n, limit=limit, resets_at=None,
        )


def _check_budget(user: User, limits: dict[str, Any], backend: str, totals: _Totals, need_s: float,
                  need_usd: float, now: datetime) -> None:
    reset = next_reset(now)
    key = f"gpu_minutes_{backend}_per_month"
    limit_min = float(limits[key])
    used_min = totals.seconds.get(backend, 0.0) / 60.0
    need_min = need_s / 60.0
    label = "Local" if backend == "local" else "Modal"
    if used_min >= limit_min or (need_min > 0 and used_min + need_min > limit_min):
        needs = f" and this job needs about {need_min:.1f} more (estimated)" if need_min > 0 else ""
        raise QuotaExceeded(
            f"{label} GPU minutes quota reached: {used_min:.1f} of {limit_min:g} minutes used this month{needs}. "
            f"The quota resets on {_fmt_reset(reset)}; ask an operator to raise it.",
            quota=key, used=round(used_min, 2), limit=limit_min, resets_at=reset,
        )
    if backend != "modal":
        return
    limit_usd = float(limits["modal_spend_usd_per_month"])
    if totals.cost_usd >= limit_usd or (need_usd > 0 and totals.cost_usd + need_usd > limit_usd):
        needs = f" and this job would cost about ${need_usd:.2f} more (estimated)" if need_usd > 0 else ""
        raise QuotaExceeded(
            f"Modal spend quota reached: ${totals.cost_usd:.2f} of ${limit_usd:.2f} spent this month{needs}. "
            f"The quota resets on {_fmt_reset(reset)}; ask an operator to raise it.",
            quota="modal_spend_usd_per_month", used=round(totals.cost_usd, 4), limit=limit_usd, resets_at=reset,
        )


def running_over_quota(job: TrainingJob) -> QuotaExceeded | None:
    """For a job that is running: its backend's GPU minutes (or Modal spend) this month, its own running attempt
    included, have reached the limit (an estimate can be short, and an operator can lower a quota mid-run)."""
    user = User.objects.get(pk=job.owner_id)
    now = timezone.now()
    try:
        _check_budget(user, user.quotas(), job.backend, _monthly_totals(user.pk, now), 0.0, 0.0, now)
    except QuotaExceeded as exc:
        return exc
    return None


def check_can_create_job(user: User, backend: str, *, estimate_s: float = 0.0, estimate_usd: float = 0.0) -> None:
    """Refuse a new job (QuotaExceeded, 429) over the concurrent-jobs limit or with this month's GPU minutes / Modal
    spend for ``backend`` used up (or not enough left for the estimate). Call it holding ``lock_user``."""
    user.refresh_from_db(fields=["quota_overrides"])  # an operator may have just changed them
    limits = user.quotas()
    now = timezone.now()
    _check_concurrent(user, limits)
    _check_budget(user, limits, backend, _monthly_totals(user.pk, now, reserve=True), estimate_s, estimate_usd, now)


def check_can_start(job: TrainingJob) -> float:
    """At claim time: refuse (QuotaExceeded) a job whose backend's GPU minutes or Modal spend this month, counting
    the other running jobs' reservations, would be exceeded by its estimate. Returns the seconds to reserve for it.
    Call it holding ``lock_user`` for the job's owner."""
    user = User.objects.get(pk=job.owner_id)
    limits = user.quotas()
    now = timezone.now()
    est_s, est_usd = estimated_cost(job)
    # What earlier attempts already used is in job.compute_seconds; only the rest is still needed.
    need_s = max(0.0, est_s - float(job.compute_seconds))
    need_usd = max(0.0, est_usd - float(job.cost_usd))
    totals = _monthly_totals(user.pk, now, exclude_job=job.pk, reserve=True)
    totals.seconds[job.backend] = totals.seconds.get(job.backend, 0.0) + float(job.compute_seconds)
    if job.backend == "modal":
        totals.cost_usd += float(job.cost_usd)
    _check_budget(user, limits, job.backend, totals, need_s, need_usd, now)
    return need_s

