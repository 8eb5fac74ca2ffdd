from __future__ import annotations

from django.urls import path

from . import views

app_name = "dashboard"

urlpatterns = [
    path("health/", views.HealthView.as_view(), name="health"),
    path("notifications/test/", views.TestNotificationView.as_view(), name="notification-test"),
    path("dashboard/stats/", views.StatsView.as_view(), name="stats"),
    path("dashboard/analytics/", views.AnalyticsView.as_view(), name="analytics"),
]
