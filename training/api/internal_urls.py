from __future__ import annotations

from django.urls import path

from . import internal

app_name = "training-internal"

urlpatterns = [
    path("jobs/<int:job_id>/events/", internal.job_events, name="events"),
    path("jobs/<int:job_id>/events/artifact/", internal.job_artifact, name="artifact"),
    path("jobs/<int:job_id>/files/<int:file_id>/", internal.job_file, name="file"),
    path("jobs/<int:job_id>/objects/<str:name>/", internal.job_object, name="object"),
]
