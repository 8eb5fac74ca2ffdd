from __future__ import annotations

from django.apps import AppConfig


class DatasetsAppConfig(AppConfig):
    """Datasets: upload, validation, preview, preprocessing (the Datasets issue fills it)."""

    name = "datasets_app"
    label = "datasets_app"
