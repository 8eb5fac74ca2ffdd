from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import notifications, views

app_name = "training"

router = SimpleRouter()
router.register("jobs", views.JobViewSet, basename="job")
urlpatterns = [
    path("presets/", views.PresetsView.as_view(), name="presets"),
    path("estimate/", views.EstimateView.as_view(), name="estimate"),
    path("notifications/test-webhook/", notifications.WebhookTestView.as_view(), name="webhook-test"),
    *router.urls,
]
