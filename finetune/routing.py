"""Websocket routes of every app (paths fixed by shared/API.md)."""

from __future__ import annotations

from django.urls import path

from dashboard.consumers import NotificationsConsumer
from models_app.consumers import GenerateConsumer
from training.consumers import JobConsumer

websocket_urlpatterns = [
    path("ws/notifications/", NotificationsConsumer.as_asgi()),
    path("ws/training/<int:job_id>/", JobConsumer.as_asgi()),
    path("ws/models/<str:target>/generate/", GenerateConsumer.as_asgi()),  # <model id> or base-<base model id>
]
