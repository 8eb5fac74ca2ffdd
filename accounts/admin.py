"""Operators' admin for users and API tokens. No secret is ever shown: only a token's last 4 characters."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import ApiToken, User


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
        "locked_until",
        "last_login",
        "date_joined",
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
    ]
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Profile", {"fields": ("display_name", "email", "first_name", "last_name")}),
        ("Hugging Face", {"fields": ("hf_token_display", "hf_username", "hf_token_saved_at")}),
        ("Sign-in protection", {"fields": ("failed_login_count", "last_failed_login", "locked_until")}),
        ("Quotas", {"fields": ("quota_overrides",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    inlines = [ApiTokenInline]
    actions = ["unlock_accounts"]

    @admin.display(description="HF token")
    def hf_token_display(self, obj: User) -> str:
        return f"•••• {obj.hf_token_last4}" if obj.has_hf_token else "—"

    @admin.action(description="Unlock selected accounts")
    def unlock_accounts(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        n = queryset.update(locked_until=None, failed_login_count=0)
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
