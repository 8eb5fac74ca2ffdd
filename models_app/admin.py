"""Admin pages for the base-model catalogue and fine-tuned models."""

from __future__ import annotations

from django.contrib import admin

from .models import BaseModel, FineTunedModel


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "repo_id", "parameters", "status", "created"]
    list_filter = ["source", "status"]
    search_fields = ["name", "repo_id"]


@admin.register(FineTunedModel)
class FineTunedModelAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "owner", "base_model", "method", "weights", "created"]
    list_filter = ["method", "weights", "created"]
    search_fields = ["name", "owner__username", "tag"]
    list_select_related = ["owner", "base_model"]
    readonly_fields = [
        "owner",
        "job",
        "base_model",
        "method",
        "weights",
        "artifact_key",
        "artifact_sha256",
        "artifact_size",
        "is_adapter",
        "metrics",
        "hyperparameters",
        "version",
        "created",
    ]


# --- Hub pushes (read-mostly: a failed push can be retried; no token is ever stored on a push)
from django.contrib import messages  # noqa: E402
from django.db.models import QuerySet  # noqa: E402
from django.http import HttpRequest  # noqa: E402

from .models import HubPush  # noqa: E402


@admin.register(HubPush)
class HubPushAdmin(admin.ModelAdmin):
    list_display = ["id", "model", "owner", "repo_id", "private", "status", "progress", "retryable", "created"]
    list_filter = ["status", "private", "retryable", "created"]
    search_fields = ["repo_id", "owner__username", "model__name"]
    list_select_related = ["owner", "model"]
    readonly_fields = [
        "owner",
        "model",
        "repo_id",
        "private",
        "repo_url",
        "commit_sha",
        "status",
        "progress",
        "stage",
        "error",
        "retryable",
        "run_token",
        "created",
        "started",
        "finished",
    ]
    actions = ["retry_failed"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Retry the selected failed pushes")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[HubPush]) -> None:
        from finetune.exceptions import ServiceError

        from .hub import retry_push

        done = 0
        for push in queryset.filter(status="failed").select_related("owner"):
            try:
                retry_push(push.owner, push.pk)
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"Push {push.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{done} push(es) queued again.")


# --- exports and Ollama imports (read-mostly: they are created through the API)
from .models import ModelExport, OllamaImport  # noqa: E402


@admin.register(ModelExport)
class ModelExportAdmin(admin.ModelAdmin):
    list_display = ["id", "model", "owner", "format", "quantization", "status", "progress", "size_bytes", "created"]
    list_filter = ["format", "quantization", "status", "created"]
    search_fields = ["model__name", "owner__username", "sha256"]
    list_select_related = ["model", "owner"]
    readonly_fields = [
        "owner",
        "model",
        "format",
        "quantization",
        "status",
        "progress",
        "stage",
        "error",
        "run_token",
        "file_key",
        "size_bytes",
        "sha256",
        "verification",
        "created",
        "started",
        "finished",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(OllamaImport)
class OllamaImportAdmin(admin.ModelAdmin):
    list_display = ["id", "model", "owner", "ollama_name", "host", "status", "progress", "created"]
    list_filter = ["status", "created"]
    search_fields = ["model__name", "owner__username", "ollama_name"]
    list_select_related = ["model", "owner"]
    readonly_fields = [
        "owner",
        "model",
        "ollama_name",
        "host",
        "status",
        "progress",
        "stage",
        "error",
        "run_token",
        "modelfile",
        "verification",
        "created",
        "started",
        "finished",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
