"""URL map: the API under /api/, the admin, and the React app's shell for every other path."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from dashboard.metrics import metrics_view
from dashboard.views import frontend_shell
from finetune.exceptions import json_404

admin.site.site_header = "finetune operations"
admin.site.site_title = "finetune admin"
admin.site.index_title = "Fleet, users and jobs"

handler400 = "finetune.exceptions.bad_request"

urlpatterns = [
    # The audit log moved from the dashboard app to accounts: old bookmarks still land on it.
    re_path(r"^admin/dashboard/auditlog/(?P<rest>.*)$", RedirectView.as_view(url="/admin/accounts/auditlog/%(rest)s")),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="prometheus-metrics"),  # operators' scrape (token or allow-list)
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # GET only: the Swagger page's template renderer cannot answer OPTIONS.
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", http_method_names=["get", "head"]),
        name="api-docs",
    ),
    path("api/auth/", include("accounts.api.urls")),
    path("api/datasets/", include("datasets_app.api.urls")),
    path("api/training/", include("training.api.urls")),
    path("api/models/", include("models_app.api.urls")),
    path("api/internal/", include("training.api.internal_urls")),
    path("api/", include("dashboard.api.urls")),
    re_path(r"^api/[\s\S]*$", json_404),  # any character, a newline included (`.` stops at one)
    # Client-side routes of the React app: a deep link reloads fine.
    re_path(r"^(?!static/|media/|ws/).*$", frontend_shell, name="frontend"),
]
