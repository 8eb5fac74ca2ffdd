"""The audit log (read-only) and the admin index with its Operations box (queue, workers, storage, audit log)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from .models import AuditLog

admin.site.index_template = "dashboard/admin/index.html"


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
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
