from __future__ import annotations

from django.apps import AppConfig


class ModelsAppConfig(AppConfig):
    """The base-model catalogue (embedded and Hub models), the fine-tuned model registry, exports, Hub pushes, Ollama
    imports and the playground."""

    name = "models_app"

    def ready(self) -> None:
        from datasets_app import base_models as dataset_base_models

        from .catalogue import tokenizer_source

        # Which base model a dataset's validation may tokenize with: one the user may use, already stored.
        dataset_base_models.register_tokenizer_source(tokenizer_source)
