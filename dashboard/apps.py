from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The top layer: the React shell, the dashboard's statistics and analytics, service health, the test notification,
    and the operators' cross-app views (admin index, storage page, the user list's usage columns)."""

    name = "dashboard"
