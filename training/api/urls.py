from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import notifications, options, sweeps, views

app_name = "training"

router = SimpleRouter()
router.register("jobs", views.JobViewSet, basename="job")
router.register("sweeps", sweeps.SweepViewSet, basename="sweep")
urlpatterns = [
    path("presets/", views.PresetsView.as_view(), name="presets"),
    path("options/", options.TrainingOptionsView.as_view(), name="options"),
    path("estimate/", views.EstimateView.as_view(), name="estimate"),
    path("notifications/test-webhook/", notifications.WebhookTestView.as_view(), name="webhook-test"),
    *router.urls,
]
