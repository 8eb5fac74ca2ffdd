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
    readonly_fields = ["owner", "job", "base_model", "method", "weights", "model_dir", "metrics", "hyperparameters",
                       "version", "created"]
