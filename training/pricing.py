"""What a job costs: the compute time it held and, on Modal, the one price function (the estimate, the per-job cost and
the quota checks use it). Prices are a settings table operators keep current (settings.MODAL_GPU_PRICES_USD_PER_HOUR)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from .models import TrainingJob


def modal_gpus() -> list[str]:
    """The Modal GPU types a job may ask for (those with a price)."""
    return list(settings.MODAL_GPU_PRICES_USD_PER_HOUR)


def modal_cost_usd(gpu: str, seconds: float) -> float:
    """USD for ``seconds`` of Modal time on ``gpu`` (0 for a GPU without a price), not rounded."""
    return max(0.0, seconds) / 3600.0 * float(settings.MODAL_GPU_PRICES_USD_PER_HOUR.get(gpu, 0.0))


def compute_seconds(job: TrainingJob) -> float:
    """Seconds of compute the job held a worker (or a Modal GPU), summed over its finished attempts."""
    total = 0.0
    for attempt in job.attempt_history or []:
        try:
            started = datetime.fromisoformat(attempt["started"])
            ended = datetime.fromisoformat(attempt["ended"])
        except (KeyError, TypeError, ValueError):
            continue
        total += max(0.0, (ended - started).total_seconds())
    return total


def account_cost(job: TrainingJob) -> None:
    """Set the job's compute_seconds and cost_usd from its finished attempts (local runs cost no money)."""
    seconds = compute_seconds(job)
    job.compute_seconds = round(seconds, 1)
    if job.backend == "modal":  # a run on N GPUs pays for each of them, as the estimate and the quotas count
        gpus = max(int((job.hyperparameters or {}).get("num_processes") or 1), 1)
        job.cost_usd = round(modal_cost_usd(job.modal_gpu, seconds) * gpus, 4)
