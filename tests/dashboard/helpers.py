"""Job rows in a given state for the dashboard tests (quotas, analytics, notifications)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from django.utils import timezone

from datasets_app.models import Dataset
from models_app.models import BaseModel
from tests.training.conftest import TINY_HYPER, make_ready_dataset
from training.models import TrainingJob
from training.services import validate_hyperparameters


def dataset_for(owner: Any, tmp_dir: Path) -> Dataset:
    """The owner's ready dataset (one per owner)."""
    ds = Dataset.objects.filter(owner=owner, status=Dataset.Status.READY).first()
    if ds is not None:
        return ds
    folder = tmp_dir / f"ds-{owner.pk}"
    folder.mkdir(parents=True, exist_ok=True)
    return make_ready_dataset(owner, tmp_dir=folder)


def make_job(owner: Any, tmp_dir: Path, *, status: str = "queued", backend: str = "local", modal_gpu: str = "",
             method: str = "sft", compute_seconds: float = 0.0, cost_usd: float = 0.0,
             created: datetime | None = None, finished: datetime | None = None, running_since: datetime | None = None,
             result: dict[str, Any] | None = None, name: str = "job", **fields: Any) -> TrainingJob:
    """A job row; `running_since` opens an attempt (a job holding a worker or a Modal GPU since then)."""
    base = BaseModel.objects.ensure_embedded()
    ds = dataset_for(owner, tmp_dir)
    history = []
    if running_since is not None:
        history = [{"attempt": 1, "worker": "w", "started": running_since.isoformat()}]
    if status in ("succeeded", "failed", "cancelled") and finished is None:
        finished = timezone.now()
    job = TrainingJob.objects.create(
        owner=owner, name=name, base_model=base, dataset=ds, method=method, weights="lora",
        hyperparameters=validate_hyperparameters(dict(TINY_HYPER)), backend=backend,
        modal_gpu=modal_gpu or ("A10G" if backend == "modal" else ""), status=status,
        compute_seconds=compute_seconds, cost_usd=cost_usd, finished=finished, result=result,
        attempt_history=history, started=running_since, **fields,
    )
    if created is not None:
        TrainingJob.objects.filter(pk=job.pk).update(created=created)
        job.refresh_from_db()
    return job
