from __future__ import annotations

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    """Training jobs on Celery/Modal around the Django-free engine in training/engine/."""

    name = "training"

    def ready(self) -> None:
        from accounts import quotas

        from . import quotas as job_quotas

        quotas.register_usage("training", job_quotas.usage)
