from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

app_name = "training"

router = SimpleRouter()
router.register("jobs", views.JobViewSet, basename="job")
urlpatterns = [
    path("presets/", views.PresetsView.as_view(), name="presets"),
    path("estimate/", views.EstimateView.as_view(), name="estimate"),
    *router.urls,
]
