"""Operators' view of training jobs: filters, the lease and attempt history, actions that call the same services as
the API (each one written to the audit log), and the queue + worker health page (`queue/`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from accounts import audit
from finetune.exceptions import ServiceError

from . import operations, services
from .models import LogLine, MetricPoint, Sweep, TrainingJob

QUEUE_PERMISSION = "training.view_trainingjob"


@admin.register(TrainingJob)
class TrainingJobAdmin(audit.AuditedAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "owner",
        "status",
        "phase",
        "backend",
        "method",
        "weights",
        "progress_pct",
        "attempts",
        "lease_owner",
        "lease_expires",
        "compute_minutes",
        "cost_usd",
        "created",
    ]
    list_filter = ["status", "backend", "method", "weights", ("owner", admin.RelatedOnlyFieldListFilter), "created"]
    search_fields = ["name", "owner__username", "owner__email", "lease_owner", "external_id"]
    list_select_related = ["owner", "base_model", "dataset"]
    ordering = ["-created"]
    readonly_fields = [f.name for f in TrainingJob._meta.fields if f.name not in ("name",)] + ["attempts_table"]
    fieldsets = (
        (None, {"fields": ("name", "owner", "status", "phase", "error", "error_kind", "cancel_requested")}),
        (
            "Run",
            {
                "fields": (
                    "base_model",
                    "dataset",
                    "method",
                    "weights",
                    "hyperparameters",
                    "backend",
                    "modal_gpu",
                    "init_from_job",
                    "external_id",
                    "checkpoint_key",
                    "checkpoint_sha256",
                    "checkpoint_size",
                    "previous_checkpoint_key",
                    "previous_checkpoint_sha256",
                    "previous_checkpoint_size",
                    "previous_checkpoint_step",
                )
            },
        ),
        (
            "Lease and attempts",
            {
                "fields": (
                    "lease_owner",
                    "lease_expires",
                    "heartbeat_at",
                    "attempts",
                    "attempts_table",
                    "attempt_history",
                )
            },
        ),
        (
            "Progress",
            {
                "fields": (
                    "current_step",
                    "total_steps",
                    "last_checkpoint_step",
                    "progress",
                    "eta_s",
                    "metric_seq",
                    "log_seq",
                )
            },
        ),
        ("Usage and result", {"fields": ("compute_seconds", "cost_usd", "result", "versions", "dataset_sha256")}),
        ("Dates", {"fields": ("created", "started", "finished", "updated")}),
    )
    actions = ["cancel_jobs", "retry_jobs", "requeue_jobs"]
    audit_prefix = "job"

    @admin.display(description="progress")
    def progress_pct(self, obj: TrainingJob) -> str:
        return f"{obj.progress * 100:.0f}%"

    @admin.display(description="compute (min)", ordering="compute_seconds")
    def compute_minutes(self, obj: TrainingJob) -> str:
        return f"{obj.compute_seconds / 60:.1f}"

    @admin.display(description="attempt history")
    def attempts_table(self, obj: TrainingJob) -> str:
        history = obj.attempt_history or []
        if not history:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    a.get("attempt", ""),
                    a.get("worker", ""),
                    a.get("started", ""),
                    a.get("ended", "(running)"),
                    a.get("outcome", ""),
                )
                for a in history
            ),
        )
        return format_html(
            '<table class="attempts"><thead><tr><th>#</th><th>worker</th><th>started</th><th>ended</th>'
            "<th>outcome</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.status in TrainingJob.ACTIVE:
            return False  # cancel it first (services.delete_job refuses it too)
        return super().has_delete_permission(request, obj)

    def delete_one(self, request: HttpRequest, obj: Any) -> None:
        services.delete_job(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> None:
        for job in queryset:
            try:
                self.delete_model(request, job)
            except ServiceError as exc:
                self.message_user(request, f"job {job.pk}: {exc.message}", messages.WARNING)

    # --- actions: the same services as the API, each one audited ----------------------------------------------------
    @admin.action(description="Cancel selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> None:
        self._each(request, queryset, services.request_cancel, "cancel", "cancelled")

    @admin.action(description="Retry (resume) selected failed/cancelled jobs", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> None:
        self._each(request, queryset, services.resume_job, "retry", "re-queued")

    @admin.action(description="Requeue selected active jobs (take them from their worker)", permissions=["change"])
    def requeue_jobs(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> None:
        self._each(request, queryset, services.requeue_job, "requeue", "requeued")

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[TrainingJob],
        fn: Callable[[TrainingJob], TrainingJob],
        action: str,
        verb: str,
    ) -> None:
        done, failed = 0, []
        for job in queryset.order_by("id"):
            before = {"status": job.status, "lease_owner": job.lease_owner, "attempts": job.attempts}
            try:
                after = fn(job)
            except ServiceError as exc:
                failed.append(f"job {job.pk}: {exc.message}")
                audit.record(
                    request.user,
                    f"job.{action}",
                    job,
                    details={"outcome": "refused", "error": exc.message, "before": before},
                )
                continue
            done += 1
            audit.record(
                request.user,
                f"job.{action}",
                job,
                details={
                    "outcome": "done",
                    "before": before,
                    "after": {"status": after.status, "cancel_requested": after.cancel_requested},
                },
            )
        if done:
            self.message_user(request, f"{done} job(s) {verb}.", messages.SUCCESS)
        for line in failed:
            self.message_user(request, line, messages.WARNING)

    # --- the queue and worker health page ---------------------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        extra = [path("queue/", self.admin_site.admin_view(self.queue_view), name="training_trainingjob_queue")]
        return extra + super().get_urls()

    def queue_view(self, request: HttpRequest) -> HttpResponse:
        """Queued jobs in order, running jobs per worker, and what each Celery worker says about itself."""
        if not request.user.has_perm(QUEUE_PERMISSION):
            raise PermissionDenied
        snapshot = operations.queue_snapshot()
        health = operations.worker_health(timeout=1.0)
        running_ids = {j.pk for jobs in snapshot.running.values() for j in jobs}
        nodes = {w.name for w in health.workers}
        orphan_nodes = [n for n in snapshot.running if n not in nodes and n not in ("modal", "(no lease)")]
        context = {
            **self.admin_site.each_context(request),
            "title": "Training queue and workers",
            "opts": self.model._meta,
            "snapshot": snapshot,
            "health": health,
            "running_ids": running_ids,
            "orphan_nodes": orphan_nodes,
            "can_change": request.user.has_perm("training.change_trainingjob"),
            "changelist_url": reverse("admin:training_trainingjob_changelist"),
        }
        return TemplateResponse(request, "training/admin/queue.html", context)


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


@admin.register(Sweep)
class SweepAdmin(admin.ModelAdmin):
    """Hyperparameter sweeps, read-only (their jobs are ordinary jobs, managed above)."""

    list_display = ["name", "owner", "strategy", "max_variants", "best_job", "promoted_model", "created", "finished"]
    list_filter = ["strategy"]
    search_fields = ["name", "owner__username"]
    readonly_fields = [f.name for f in Sweep._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
