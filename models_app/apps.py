from __future__ import annotations

from django.apps import AppConfig


class ModelsAppConfig(AppConfig):
    """Base-model catalogue and fine-tuned model registry (the Models issue fills it)."""

    name = "models_app"
