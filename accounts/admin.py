"""Operators' admin for users, API tokens, sign-in locks and the audit log: effective quotas per user, validated quota
overrides (audited). No secret is ever shown: only a token's last 4 characters. The dashboard extends the user list
with usage columns and the storage page (dashboard/admin.py). The admin's own sign-in goes through the API sign-in's
throttles and (username, address) lockout."""

from __future__ import annotations

import json
from numbers import Real
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join

from finetune.exceptions import ServiceError

from . import audit, quotas, signin
from .api.throttles import sign_in_wait, throttled_message
from .models import ApiToken, AuditLog, LoginLock, User

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


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's sign-in form: the API sign-in's throttles (same buckets) and its (username, address) lockout, with
    answers that never tell whether an account exists."""

    def clean(self) -> dict[str, Any]:
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is None or not password:
            return self.cleaned_data
        wait = sign_in_wait(self.request)
        if wait is not None:
            raise forms.ValidationError(throttled_message(wait), code="throttled")
        try:
            self.user_cache = signin.sign_in(request=self.request, username=username, password=password)
        except signin.TooManyAttempts as exc:
            raise forms.ValidationError(exc.message, code="locked") from None
        except ServiceError:
            raise self.get_invalid_login_error() from None
        self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


admin.site.login_form = ThrottledAdminAuthenticationForm


class OperatorUserChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        fields = "__all__"

    def clean_quota_overrides(self) -> dict[str, Any]:
        return validate_quota_overrides(self.cleaned_data.get("quota_overrides"))


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
        "locked_until",
        "last_login",
        "date_joined",
        "quota_summary",
    ]
    # What only a superuser may change: who is staff or superuser, and what anyone may do.
    PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")
    form = OperatorUserChangeForm
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Profile", {"fields": ("display_name", "email", "first_name", "last_name")}),
        ("Hugging Face", {"fields": ("hf_token_display", "hf_username", "hf_token_saved_at")}),
        (
            "Sign-in protection",
            {
                "fields": ("failed_login_count", "last_failed_login", "locked_until"),
                "description": 'Locks apply per (username, address): "locked until" is the latest lock from some '
                'address, not a lock on the owner. "Unlock selected accounts" in the list lifts them all.',
            },
        ),
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

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        """Staff without superuser rights see privileges but cannot grant any (to others or to themselves)."""
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += [f for f in self.PRIVILEGE_FIELDS if f not in fields]
        return fields

    @admin.display(description="HF token")
    def hf_token_display(self, obj: User) -> str:
        return f"•••• {obj.hf_token_last4}" if obj.has_hf_token else "—"

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
        pairs = signin.unlock(user.username for user in users)
        n = queryset.update(locked_until=None, failed_login_count=0)
        for user in users:
            audit.record(
                request.user,
                "user.unlock",
                user,
                details={
                    "locked_until": user.locked_until,
                    "failed_login_count": user.failed_login_count,
                    "pairs_cleared": pairs,
                },
            )
        self.message_user(request, f"Unlocked {n} account(s).", messages.SUCCESS)


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


@admin.register(LoginLock)
class LoginLockAdmin(admin.ModelAdmin):
    """Failed sign-ins per (username, address), for any submitted username; deleting a row lifts its lock."""

    list_display = ["username", "ip", "failures", "last_failure", "locked_until"]
    list_filter = ["last_failure", "locked_until"]
    search_fields = ["username", "ip"]
    fields = list_display
    readonly_fields = list_display

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[LoginLock]) -> None:
        for row in queryset:
            self.delete_model(request, row)

    def delete_model(self, request: HttpRequest, obj: LoginLock) -> None:
        audit.record(request.user, "signin.unlock", obj, details={"username": obj.username, "ip": obj.ip})
        super().delete_model(request, obj)


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    """The audit log, read-only: nobody adds, edits or deletes an entry from the admin."""

    list_display = ["time", "actor_username", "action", "target_type", "target_id", "target_repr"]
    list_filter = ["action", "target_type", "time"]
    search_fields = ["actor_username", "action", "target_id", "target_repr"]
    date_hierarchy = "time"
    fields = ["time", "actor", "actor_username", "action", "target_type", "target_id", "target_repr", "details_pretty"]
    readonly_fields = fields

    @admin.display(description="details")
    def details_pretty(self, obj: AuditLog) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, default=str))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
