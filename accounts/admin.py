"""Operators' admin for users and API tokens: usage this month and effective quotas per user, validated quota
overrides (audited), and the storage usage page (`storage/`). No secret is ever shown: only a token's last 4
characters."""

from __future__ import annotations

from numbers import Real
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import PermissionDenied
from django.db.models import Count, FloatField, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join

from dashboard import audit, operations

from . import quotas
from .models import ApiToken, User

# Quotas counted in whole units; the others (minutes, dollars) may be fractional.
INTEGER_QUOTAS = {"concurrent_jobs", "storage_bytes"}


def validate_quota_overrides(value: Any) -> dict[str, Any]:
    """A clean overrides dict: known quota names only, non-negative numbers (whole for counts and bytes); a null
    value removes that override. Raises forms.ValidationError with every problem named."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise forms.ValidationError('Quota overrides must be a JSON object, e.g. {"concurrent_jobs": 4}.')
    known = list(settings.DEFAULT_QUOTAS)
    errors, clean = [], {}
    for key, v in value.items():
        if key not in settings.DEFAULT_QUOTAS:
            errors.append(f"Unknown quota '{key}' (known: {', '.join(known)}).")
        elif v is None:
            continue
        elif isinstance(v, bool) or not isinstance(v, Real):
            errors.append(f"'{key}' must be a number, got {v!r}.")
        elif v < 0:
            errors.append(f"'{key}' cannot be negative.")
        elif key in INTEGER_QUOTAS and int(v) != v:
            errors.append(f"'{key}' must be a whole number.")
        else:
            clean[key] = int(v) if key in INTEGER_QUOTAS else v
    if errors:
        raise forms.ValidationError(errors)
    return clean


class OperatorUserChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = "__all__"

    def clean_quota_overrides(self) -> dict[str, Any]:
        return validate_quota_overrides(self.cleaned_data.get("quota_overrides"))


def _with_usage(qs: QuerySet[User]) -> QuerySet[User]:
    """Annotate storage bytes, job count, compute minutes and Modal spend this month (finished jobs' recorded
    compute_seconds / cost_usd; the change page adds the running jobs' elapsed time)."""
    from datasets_app.models import DatasetFile
    from training.models import TrainingJob

    month = quotas.month_start()
    storage = (
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
        usage_storage=Coalesce(Subquery(storage, output_field=IntegerField()), Value(0)),
        usage_jobs=Coalesce(Subquery(jobs, output_field=IntegerField()), Value(0)),
        usage_seconds=Coalesce(Subquery(seconds, output_field=FloatField()), Value(0.0)),
        usage_spend=Coalesce(Subquery(spend, output_field=FloatField()), Value(0.0)),
    )


class HasHfTokenFilter(admin.SimpleListFilter):
    title = "Hugging Face token"
    parameter_name = "hf_token"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Saved"), ("no", "None")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> QuerySet[User]:
        if self.value() == "yes":
            return queryset.exclude(hf_token_encrypted="")
        if self.value() == "no":
            return queryset.filter(hf_token_encrypted="")
        return queryset


class ApiTokenInline(admin.TabularInline):
    model = ApiToken
    extra = 0
    fields = ["name", "prefix", "created", "last_used"]
    readonly_fields = fields
    can_delete = True
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = [
        "username",
        "email",
        "display_name",
        "is_staff",
        "is_active",
        "hf_token_display",
        "storage_used",
        "jobs_count",
        "gpu_minutes_month",
        "modal_spend_month",
        "has_overrides",
        "locked_until",
        "last_login",
    ]
    list_filter = ["is_staff", "is_superuser", "is_active", HasHfTokenFilter, "date_joined"]
    search_fields = ["username", "email", "display_name", "hf_username"]
    ordering = ["-date_joined"]
    readonly_fields = [
        "hf_token_display",
        "hf_username",
        "hf_token_saved_at",
        "failed_login_count",
        "last_failed_login",
        "last_login",
        "date_joined",
        "quota_summary",
    ]
    form = OperatorUserChangeForm
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Profile", {"fields": ("display_name", "email", "first_name", "last_name")}),
        ("Hugging Face", {"fields": ("hf_token_display", "hf_username", "hf_token_saved_at")}),
        ("Sign-in protection", {"fields": ("failed_login_count", "last_failed_login", "locked_until")}),
        (
            "Quotas",
            {
                "fields": ("quota_summary", "quota_overrides"),
                "description": 'Overrides as JSON, e.g. {"concurrent_jobs": 4, "gpu_minutes_local_per_month": '
                "12000}; a key left out takes the default, null removes an override.",
            },
        ),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    inlines = [ApiTokenInline]
    actions = ["unlock_accounts"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return _with_usage(super().get_queryset(request))

    @admin.display(description="HF token")
    def hf_token_display(self, obj: User) -> str:
        return f"•••• {obj.hf_token_last4}" if obj.has_hf_token else "—"

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

    @admin.display(description="overrides", boolean=True)
    def has_overrides(self, obj: User) -> bool:
        return bool(obj.quota_overrides)

    @admin.display(description="effective quotas and usage")
    def quota_summary(self, obj: User) -> str:
        if obj.pk is None:
            return "—"
        summary = quotas.summary(obj)
        used = summary["usage"]
        used_key = {
            "concurrent_jobs": "concurrent_jobs",
            "storage_bytes": "storage_bytes",
            "gpu_minutes_local_per_month": "gpu_minutes_local_this_month",
            "gpu_minutes_modal_per_month": "gpu_minutes_modal_this_month",
            "modal_spend_usd_per_month": "modal_spend_usd_this_month",
        }
        overrides = obj.quota_overrides or {}

        def fmt(key: str, value: Any) -> str:
            return (
                filesizeformat(value)
                if key == "storage_bytes"
                else f"{value:g}"
                if isinstance(value, float)
                else str(value)
            )

        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}{}</td><td>{}</td></tr>",
            (
                (
                    key,
                    fmt(key, limit),
                    " (override)" if key in overrides else "",
                    fmt(key, used.get(used_key.get(key, ""), "—")),
                )
                for key, limit in summary["quotas"].items()
            ),
        )
        return format_html(
            '<table data-testid="quota-summary"><thead><tr><th>quota</th><th>limit</th><th>used</th>'
            "</tr></thead><tbody>{}</tbody></table><p>Monthly figures reset {}.</p>",
            rows,
            summary["resets_at"],
        )

    def save_model(self, request: HttpRequest, obj: User, form: forms.ModelForm, change: bool) -> None:
        before = User.objects.filter(pk=obj.pk).values("quota_overrides").first() if change else None
        super().save_model(request, obj, form, change)
        if change and "quota_overrides" in form.changed_data:
            audit.record(
                request.user,
                "user.quota_overrides",
                obj,
                details={
                    "before": (before or {}).get("quota_overrides") or {},
                    "after": obj.quota_overrides,
                    "effective": obj.quotas(),
                },
            )
        other = [f for f in form.changed_data if f not in ("quota_overrides", "password")]
        if change and other:
            audit.record(request.user, "user.change", obj, details={"fields": other})

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        audit.record(request.user, "user.delete", obj, details={"username": obj.username, "email": obj.email})
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            self.delete_model(request, user)

    @admin.action(description="Unlock selected accounts")
    def unlock_accounts(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = list(queryset)
        n = queryset.update(locked_until=None, failed_login_count=0)
        for user in users:
            audit.record(
                request.user,
                "user.unlock",
                user,
                details={"locked_until": user.locked_until, "failed_login_count": user.failed_login_count},
            )
        self.message_user(request, f"Unlocked {n} account(s).", messages.SUCCESS)

    # --- storage usage page -----------------------------------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        extra = [path("storage/", self.admin_site.admin_view(self.storage_view), name="accounts_user_storage")]
        return extra + super().get_urls()

    def storage_view(self, request: HttpRequest) -> HttpResponse:
        """Storage per user (datasets, exports, run folders) and the total."""
        if not request.user.has_perm("accounts.view_user"):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Storage usage",
            "opts": self.model._meta,
            "usage": operations.storage_usage(),
        }
        return TemplateResponse(request, "dashboard/admin/storage.html", context)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created", "last_used"]
    list_filter = ["created", "last_used"]
    search_fields = ["name", "prefix", "user__username", "user__email"]
    readonly_fields = ["user", "name", "prefix", "created", "last_used"]
    fields = readonly_fields
    list_select_related = ["user"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
