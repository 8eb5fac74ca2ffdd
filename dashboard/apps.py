from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The React shell, service health and user notifications."""

    name = "dashboard"
