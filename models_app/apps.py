from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from pathlib import Path


class ModelsAppConfig(AppConfig):
    """The base-model catalogue (embedded and Hub models), the fine-tuned model registry, exports, Hub pushes, Ollama
    imports and the playground."""

    name = "models_app"

    def ready(self) -> None:
        from datasets_app import base_models as dataset_base_models

        dataset_base_models.register_tokenizer_source(dataset_tokenizer)


def dataset_tokenizer(user_id: int, base_model_id: int) -> tuple[str, AbstractContextManager[Path]] | None:
    """datasets_app's catalogue lookup: a base model the user may use -> (its name, its tokenizer folder), else None.
    Only a model already in the artifact store (or the embedded one): the web process never downloads from the Hub."""
    from .artifacts import base_model_folder
    from .models import BaseModel

    base = BaseModel.objects.filter(pk=base_model_id, status=BaseModel.Status.AVAILABLE).first()
    if base is None or (base.source != BaseModel.Source.EMBEDDED and not base.artifact_sha256):
        return None
    return base.public_id, base_model_folder(base)
