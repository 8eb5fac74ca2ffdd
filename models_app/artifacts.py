"""Where a host finds a model's files: fine-tuned models and Hub/uploaded base models come from the artifact store
through this host's cache (finetune/artifacts.py); the embedded default comes from its package on every host."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from finetune import artifacts
from finetune.exceptions import ServiceError
from models_app.models import BaseModel, FineTunedModel

MISSING_FILES = "This model's files are missing from the artifact store"


def has_files(model: FineTunedModel) -> bool:
    return bool(model.artifact_key and model.artifact_sha256)


def require_files(model: FineTunedModel, action: str) -> None:
    """ServiceError (409) when the model has no stored files, naming what cannot be done."""
    if not has_files(model):
        raise ServiceError(f"{MISSING_FILES}, so it cannot be {action}.", status_code=409)


@contextlib.contextmanager
def model_folder(model: FineTunedModel) -> Iterator[Path]:
    """The fine-tuned model's folder (adapter or full model) on this host, for the duration of the block."""
    require_files(model, "used")
    with artifacts.use(model.artifact_key, model.artifact_sha256, label=f"model {model.pk} ({model})") as path:
        yield path


@contextlib.contextmanager
def base_model_folder(base: BaseModel) -> Iterator[str]:
    """What the engine loads for a base model on this host: the embedded model's folder from its package, a stored
    snapshot from the cache, else the Hub id (resolved by the engine)."""
    if base.source == BaseModel.Source.EMBEDDED:
        from training.engine.embedded import resolve_model_path

        yield resolve_model_path(base.repo_id)
        return
    if base.artifact_key and base.artifact_sha256:
        with artifacts.use(base.artifact_key, base.artifact_sha256, label=f"base model {base.repo_id}") as path:
            yield str(path)
        return
    yield base.repo_id


def store_model_folder(folder: str | Path, prefix: str) -> dict[str, object]:
    """Upload a model folder; the FineTunedModel fields that name it."""
    from training.engine.exporters.base import is_adapter_dir

    stored = artifacts.store_folder(folder, prefix)
    return {
        "artifact_key": stored.key,
        "artifact_sha256": stored.sha256,
        "artifact_size": stored.size,
        "is_adapter": is_adapter_dir(folder),
    }
