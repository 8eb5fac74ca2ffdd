"""Per-user quotas, in one place: the limits (``User.quotas()``: settings.DEFAULT_QUOTAS overridden per user by
operators), the checks against them, and the usage summary the UI shows.

Each domain app counts its own usage and calls the check here with the figures: datasets_app the storage its files
take (``check_storage``), training its active jobs, GPU minutes and Modal spend (``check_concurrent``,
``check_budget``, from training/quotas.py). For the summary each app registers a usage source at start-up
(``register_usage``), so this module, at the bottom of the layers, imports none of them.

Monthly figures run from the first of the month (UTC). Checks that count rows must run inside a transaction that holds
the user's row lock (``lock_user``), so parallel creates, starts and uploads are counted one after the other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from finetune.exceptions import ServiceError
from finetune.formatting import human_bytes

from .models import User

# A usage source: (user id, now, figures the caller already has) -> usage figures, keys as in ``USED_BY_LIMIT``'s
# values (e.g. "storage_bytes"); a source may skip a figure the caller already has.
UsageSource = Callable[[int, datetime, dict[str, Any]], dict[str, Any]]
_sources: dict[str, UsageSource] = {}

# Each limit and the usage figure it is compared with.
USED_BY_LIMIT = {
    "concurrent_jobs": "concurrent_jobs",
    "storage_bytes": "storage_bytes",
    "gpu_minutes_local_per_month": "gpu_minutes_local_this_month",
    "gpu_minutes_modal_per_month": "gpu_minutes_modal_this_month",
    "modal_spend_usd_per_month": "modal_spend_usd_this_month",
}


class QuotaExceeded(ServiceError):
    """A quota would be exceeded; the message names the limit, the usage and when it resets."""

    status_code = 429

    def __init__(
        self,
        message: str,
        *,
        quota: str,
        used: float,
        limit: float,
        resets_at: datetime | None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
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


def limits_of(user_id: int) -> dict[str, Any]:
    """The user's effective limits, read fresh (an operator may have just changed the overrides)."""
    return User.objects.only("quota_overrides").get(pk=user_id).quotas()


# --- checks, each with the caller's own counts ------------------------------------------------------------------------
def check_storage(limits: dict[str, Any], used_bytes: int, incoming_bytes: int, *, slack_bytes: int = 0) -> None:
    """Refuse (QuotaExceeded, 413) an upload of ``incoming_bytes`` on top of ``used_bytes`` over the storage quota
    (``slack_bytes``: allowance for a declared size that includes the request's framing)."""
    quota = int(limits["storage_bytes"])
    if used_bytes + incoming_bytes > quota + slack_bytes:
        raise QuotaExceeded(
            f"This upload ({human_bytes(incoming_bytes)}) would take you past your storage quota: "
            f"{human_bytes(used_bytes)} of {human_bytes(quota)} used. Delete datasets you no longer need or ask an "
            "operator for more space.",
            quota="storage_bytes",
            used=used_bytes,
            limit=quota,
            resets_at=None,
            status_code=413,
        )


def check_concurrent(limits: dict[str, Any], active_jobs: int) -> None:
    """Refuse one more job when ``active_jobs`` already reach the concurrent-jobs limit."""
    limit = int(limits["concurrent_jobs"])
    if active_jobs >= limit:
        raise QuotaExceeded(
            f"Concurrent jobs quota reached: you already have {active_jobs} active training job(s) and your limit is "
            f"{limit}. Wait for one to finish or cancel it (ask an operator to raise the limit).",
            quota="concurrent_jobs",
            used=active_jobs,
            limit=limit,
            resets_at=None,
        )


def check_budget(
    limits: dict[str, Any],
    backend: str,
    *,
    used_seconds: float,
    used_usd: float,
    need_s: float = 0.0,
    need_usd: float = 0.0,
    now: datetime | None = None,
) -> None:
    """Refuse when this month's GPU minutes on ``backend`` (or, on Modal, the spend) are used up, or would be by
    ``need_s`` / ``need_usd`` more (an estimate; 0 when unknown)."""
    reset = next_reset(now)
    key = f"gpu_minutes_{backend}_per_month"
    limit_min = float(limits[key])
    used_min = used_seconds / 60.0
    need_min = need_s / 60.0
    label = "Local" if backend == "local" else "Modal"
    if used_min >= limit_min or (need_min > 0 and used_min + need_min > limit_min):
        needs = f" and this job needs about {need_min:.1f} more (estimated)" if need_min > 0 else ""
        raise QuotaExceeded(
            f"{label} GPU minutes quota reached: {used_min:.1f} of {limit_min:g} minutes used this month{needs}. "
            f"The quota resets on {_fmt_reset(reset)}; ask an operator to raise it.",
            quota=key,
            used=round(used_min, 2),
            limit=limit_min,
            resets_at=reset,
        )
    if backend != "modal":
        return
    limit_usd = float(limits["modal_spend_usd_per_month"])
    if used_usd >= limit_usd or (need_usd > 0 and used_usd + need_usd > limit_usd):
        needs = f" and this job would cost about ${need_usd:.2f} more (estimated)" if need_usd > 0 else ""
        raise QuotaExceeded(
            f"Modal spend quota reached: ${used_usd:.2f} of ${limit_usd:.2f} spent this month{needs}. "
            f"The quota resets on {_fmt_reset(reset)}; ask an operator to raise it.",
            quota="modal_spend_usd_per_month",
            used=round(used_usd, 4),
            limit=limit_usd,
            resets_at=reset,
        )


# --- usage ----------------------------------------------------------------------------------------------------------
def register_usage(name: str, source: UsageSource) -> None:
    """Add (or replace) a usage source; domain apps call it from their AppConfig.ready()."""
    _sources[name] = source


def usage(user: User, *, active: int | None = None) -> dict[str, Any]:
    """Current usage against each quota (keys as in ``USED_BY_LIMIT``), with the monthly period. ``active``: the
    number of active jobs when the caller already counted them."""
    now = timezone.now()
    known: dict[str, Any] = {} if active is None else {"concurrent_jobs": active}
    used = dict(known)
    for source in _sources.values():
        used.update(source(user.pk, now, known))
    return {**used, "period_start": month_start(now).isoformat(), "resets_at": next_reset(now).isoformat()}


def summary(user: User, *, active: int | None = None) -> dict[str, Any]:
    """Quotas, usage and what is left, for the UI (``active``: see usage)."""
    limits = user.quotas()
    used = usage(user, active=active)
    remaining = {
        k: round(max(0.0, float(limits[k]) - float(used[u])), 4)
        for k, u in USED_BY_LIMIT.items()
        if k in limits and u in used
    }
    return {"quotas": limits, "usage": used, "remaining": remaining, "resets_at": used["resets_at"]}
