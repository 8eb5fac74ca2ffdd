"""Experiment tracking of training jobs (``hyperparameters.report_to``): the checks at creation, the environment a
run gets (the MLflow server from settings, the owner's W&B key), and the TensorBoard events kept as an artifact.

The engine logs through transformers' own callbacks (``training.engine.tracking``); it reads the MLflow URI and the
W&B key from its process environment only, so the key is never part of the job's spec, result, events or logs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from django.conf import settings

from accounts import services as accounts
from accounts.models import User
from finetune import artifacts
from finetune.exceptions import ServiceError
from training.engine.errors import ConfigError
from training.engine.tracking import DEFAULT_PROJECT, TENSORBOARD_DIR

from .models import TrainingJob

TENSORBOARD_PREFIX = "artifacts/tensorboard"


def check_report_to(owner: User, hyperparameters: Mapping[str, Any]) -> None:
    """At job creation: every tracker asked for is usable (400 naming ``hyperparameters.report_to`` otherwise)."""
    wanted = hyperparameters.get("report_to") or ()
    if "mlflow" in wanted and not settings.MLFLOW_TRACKING_URI:
        raise ServiceError(
            "report_to 'mlflow' is not available: this server has no MLflow tracking server configured "
            "(MLFLOW_TRACKING_URI).",
            field="hyperparameters.report_to",
        )
    if "wandb" in wanted and not owner.has_wandb_key:
        raise ServiceError(
            "report_to 'wandb' needs your Weights & Biases API key: save it in Settings first.",
            field="hyperparameters.report_to",
        )


def run_environment(job: TrainingJob) -> dict[str, str]:
    """The environment variables the job's training process needs for its trackers (secrets included: never log or
    store the result). ``ConfigError`` when a tracker became unusable since the job was created."""
    wanted = (job.hyperparameters or {}).get("report_to") or ()
    env: dict[str, str] = {}
    if "mlflow" in wanted:
        if not settings.MLFLOW_TRACKING_URI:
            raise ConfigError("report_to 'mlflow': this server no longer has an MLflow tracking server configured.")
        env["MLFLOW_TRACKING_URI"] = settings.MLFLOW_TRACKING_URI
        env["MLFLOW_EXPERIMENT_NAME"] = settings.MLFLOW_EXPERIMENT_NAME or DEFAULT_PROJECT
    if "wandb" in wanted:
        key = accounts.get_wandb_key(job.owner)
        if not key:
            raise ConfigError("report_to 'wandb': the owner's Weights & Biases API key was deleted; save it again.")
        env["WANDB_API_KEY"] = key
        env["WANDB_PROJECT"] = os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
    return env


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in this process's environment for the block (the local runner trains in-process, one job at a
    time per worker process), restoring the earlier values afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def tensorboard_prefix(job_id: int) -> str:
    """Where a job's TensorBoard events are stored (a local run's upload or a remote run's)."""
    return f"{TENSORBOARD_PREFIX}/job-{job_id}"


def store_tensorboard(job_id: int, output_dir: str | Path, result: dict[str, Any]) -> dict[str, Any]:
    """Upload the run's TensorBoard event files (when it wrote any) and record the stored object in the result's
    ``tracking`` as ``tensorboard_artifact``; the result unchanged otherwise."""
    tracking = dict(result.get("tracking") or {})
    folder = Path(output_dir) / TENSORBOARD_DIR
    if not tracking.get("tensorboard") or not folder.is_dir():
        return result
    stored = artifacts.store_folder(folder, tensorboard_prefix(job_id))
    tracking["tensorboard_artifact"] = {"key": stored.key, "sha256": stored.sha256, "size": stored.size}
    return {**result, "tracking": tracking}


def tensorboard_artifact(job: TrainingJob) -> dict[str, Any]:
    """The stored TensorBoard events of the job ({key, sha256, size}). A job without any answers 409 (a 404 would
    read as "no such job", which another user's id answers)."""
    stored = ((job.result or {}).get("tracking") or {}).get("tensorboard_artifact")
    # A key is only ever the job's own events (a remote run reports the key the upload answered: never trust more).
    if not stored or not str(stored.get("key") or "").startswith(tensorboard_prefix(job.pk) + "/"):
        raise ServiceError(
            "This job has no TensorBoard events: train it with report_to ['tensorboard'] and let it finish.",
            status_code=409,
        )
    return dict(stored)


def tracking_links(job: TrainingJob) -> dict[str, Any]:
    """What the job page shows: the MLflow / W&B run links where a URL exists, and whether TensorBoard events can
    be downloaded."""
    tracking = (job.result or {}).get("tracking") or {}
    mlflow = tracking.get("mlflow") or {}
    wandb = tracking.get("wandb") or {}
    return {
        "report_to": list((job.hyperparameters or {}).get("report_to") or ()),
        "mlflow_url": mlflow.get("url"),
        "wandb_url": wandb.get("url"),
        "tensorboard": bool(tracking.get("tensorboard_artifact")),
    }
