"""Read-mostly admin pages for datasets."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from accounts import audit

from . import files
from .models import Dataset, DatasetFile


class DatasetFileInline(admin.TabularInline):
    model = DatasetFile
    extra = 0
    fields = ["role", "original_filename", "kind", "compressed", "size_bytes", "sha256", "file"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Dataset)
class DatasetAdmin(audit.AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "owner", "version", "status", "verdict", "format", "row_count", "size_bytes", "created"]
    list_filter = ["status", "verdict", "format", ("owner", admin.RelatedOnlyFieldListFilter), "created"]
    search_fields = ["name", "owner__username", "owner__email", "original_filename"]
    list_select_related = ["owner"]
    readonly_fields = [f.name for f in Dataset._meta.fields if f.name not in ("name",)]
    inlines = [DatasetFileInline]
    audit_prefix = "dataset"

    def delete_one(self, request: HttpRequest, obj: Any) -> None:
        files.delete_dataset(obj)  # the same service as the API (files removed too)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
