from __future__ import annotations

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    """Training jobs on Celery/Modal around the Django-free engine in training/engine/."""

    name = "training"

    def ready(self) -> None:
        from accounts import quotas

        from . import quotas as job_quotas
        from . import services, sweeps

        quotas.register_usage("training", job_quotas.usage)
        services.job_finished.connect(sweeps.on_job_finished, dispatch_uid="training.sweeps.on_job_finished")
