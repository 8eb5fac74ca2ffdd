"""Operators' view of training jobs: filters, the lease and attempt history, and actions that call the services."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from finetune.exceptions import ServiceError

from . import services
from .models import LogLine, MetricPoint, TrainingJob


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "status", "phase", "backend", "method", "weights", "progress_pct",
                    "attempts", "lease_owner", "lease_expires", "cost_usd", "created"]
    list_filter = ["status", "backend", "method", "weights", "owner", "created"]
    search_fields = ["name", "owner__username", "owner__email", "lease_owner", "external_id"]
    list_select_related = ["owner", "base_model", "dataset"]
    ordering = ["-created"]
    readonly_fields = [f.name for f in TrainingJob._meta.fields if f.name not in ("name",)] + ["attempts_table"]
    actions = ["cancel_jobs", "retry_jobs", "requeue_jobs"]

    @admin.display(description="progress")
    def progress_pct(self, obj: TrainingJob) -> str:
        return f"{obj.progress * 100:.0f}%"

    @admin.display(description="attempt history")
    def attempts_table(self, obj: TrainingJob) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.attempt_history, indent=2))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Cancel selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> None:
        self._each(request, queryset, services.request_cancel, "cancelled")

    @admin.action(description="Retry (resume) selected failed/cancelled jobs", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> None:
        self._each(request, queryset, services.resume_job, "re-queued")

    @admin.action(description="Requeue selected stuck jobs (expire their lease now)", permissions=["change"])
    def requeue_jobs(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> None:
        from django.utils import timezone

        n = queryset.filter(status__in=[TrainingJob.Status.STARTING, TrainingJob.Status.RUNNING]).update(
            lease_expires=timezone.now())
        recovered = services.recover_expired_leases()
        self.message_user(request, f"Expired {n} lease(s); {recovered} job(s) re-queued.", messages.SUCCESS)

    def _each(self, request: HttpRequest, queryset: QuerySet[TrainingJob], fn, verb: str) -> None:  # type: ignore[no-untyped-def]
        done, failed = 0, []
        for job in queryset:
            try:
                fn(job)
                done += 1
            except ServiceError as exc:
                failed.append(f"job {job.pk}: {exc.message}")
        if done:
            self.message_user(request, f"{done} job(s) {verb}.", messages.SUCCESS)
        for line in failed:
            self.message_user(request, line, messages.WARNING)


@admin.register(MetricPoint)
class MetricPointAdmin(admin.ModelAdmin):
    list_display = ["job", "seq", "kind", "step", "loss", "eval_loss", "learning_rate", "tokens_per_s", "time"]
    list_filter = ["kind"]
    search_fields = ["job__name"]
    readonly_fields = [f.name for f in MetricPoint._meta.fields]


@admin.register(LogLine)
class LogLineAdmin(admin.ModelAdmin):
    list_display = ["job", "seq", "level", "line", "time"]
    list_filter = ["level"]
    search_fields = ["line", "job__name"]
    readonly_fields = [f.name for f in LogLine._meta.fields]
