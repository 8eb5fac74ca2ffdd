from __future__ import annotations

from django.apps import AppConfig


class DatasetsAppConfig(AppConfig):
    """Datasets: upload, validation, preview, preprocessing, versions."""

    name = "datasets_app"
    label = "datasets_app"

    def ready(self) -> None:
        from accounts import quotas

        from . import quotas as dataset_quotas

        quotas.register_usage("datasets", dataset_quotas.storage_usage)
