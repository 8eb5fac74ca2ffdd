from __future__ import annotations

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    """Training jobs on Celery/Modal around the Django-free engine in training/engine/."""

    name = "training"
