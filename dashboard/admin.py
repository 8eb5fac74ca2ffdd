"""The operators' views that read across apps: the admin index with its Operations box, the user list's usage columns
(storage, jobs, compute and Modal spend this month) and the storage usage page (`/admin/accounts/user/storage/`).

`accounts` registers the user admin; the dashboard, at the top of the layers, re-registers it extended with what it
counts in the other apps, so `accounts` never imports them."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, FloatField, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from accounts import quotas
from accounts.admin import UserAdmin
from accounts.models import User
from datasets_app.models import DatasetFile
from training.models import TrainingJob

from . import storage

admin.site.index_template = "dashboard/admin/index.html"


def with_usage(qs: QuerySet[User]) -> QuerySet[User]:
    """Annotate storage bytes, job count, compute minutes and Modal spend this month (finished jobs' recorded
    compute_seconds / cost_usd; the change page's quota summary adds the running jobs' elapsed time)."""
    month = quotas.month_start()
    storage_sum = (
        DatasetFile.objects.filter(dataset__owner=OuterRef("pk"))
        .values("dataset__owner")
        .annotate(n=Sum("size_bytes"))
        .values("n")
    )
    jobs = TrainingJob.objects.filter(owner=OuterRef("pk")).values("owner").annotate(n=Count("id")).values("n")
    month_jobs = TrainingJob.objects.filter(owner=OuterRef("pk"), finished__gte=month).values("owner")
    seconds = month_jobs.annotate(n=Sum("compute_seconds")).values("n")
    spend = month_jobs.filter(backend="modal").annotate(n=Sum("cost_usd")).values("n")
    return qs.annotate(
        usage_storage=Coalesce(Subquery(storage_sum, output_field=IntegerField()), Value(0)),
        usage_jobs=Coalesce(Subquery(jobs, output_field=IntegerField()), Value(0)),
        usage_seconds=Coalesce(Subquery(seconds, output_field=FloatField()), Value(0.0)),
        usage_spend=Coalesce(Subquery(spend, output_field=FloatField()), Value(0.0)),
    )


class OperatorUserAdmin(UserAdmin):
    """The accounts app's user admin, with usage columns and the storage page."""

    list_display = [
        *[c for c in UserAdmin.list_display if c not in ("has_overrides", "locked_until", "last_login")],
        "storage_used",
        "jobs_count",
        "gpu_minutes_month",
        "modal_spend_month",
        "has_overrides",
        "locked_until",
        "last_login",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return with_usage(super().get_queryset(request))

    @admin.display(description="storage", ordering="usage_storage")
    def storage_used(self, obj: User) -> str:
        return filesizeformat(getattr(obj, "usage_storage", 0))

    @admin.display(description="jobs", ordering="usage_jobs")
    def jobs_count(self, obj: User) -> int:
        return int(getattr(obj, "usage_jobs", 0))

    @admin.display(description="compute min (month)", ordering="usage_seconds")
    def gpu_minutes_month(self, obj: User) -> str:
        return f"{getattr(obj, 'usage_seconds', 0.0) / 60:.1f}"

    @admin.display(description="Modal $ (month)", ordering="usage_spend")
    def modal_spend_month(self, obj: User) -> str:
        return f"{getattr(obj, 'usage_spend', 0.0):.2f}"

    def get_urls(self) -> list[URLPattern]:
        extra = [path("storage/", self.admin_site.admin_view(self.storage_view), name="accounts_user_storage")]
        return extra + super().get_urls()

    def storage_view(self, request: HttpRequest) -> HttpResponse:
        """Storage per user (datasets, exports, stored runs and models) and the total."""
        if not request.user.has_perm("accounts.view_user"):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Storage usage",
            "opts": self.model._meta,
            "usage": storage.storage_usage(),
        }
        return TemplateResponse(request, "dashboard/admin/storage.html", context)


admin.site.unregister(User)
admin.site.register(User, OperatorUserAdmin)
