"""The operators' audit log: one row per action taken in the admin (job actions, quota overrides)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditLog(models.Model):
    """Who did what to which object, and when. Written by `dashboard.audit.record`; never edited."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    # The actor's username at the time, kept when the account is deleted later.
    actor_username = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=64, db_index=True)  # e.g. job.cancel, job.retry, user.quota_overrides
    target_type = models.CharField(max_length=64, db_index=True)  # app_label.model, e.g. training.trainingjob
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_repr = models.CharField(max_length=200, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    time = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.actor_username or 'system'} {self.action} {self.target_type}:{self.target_id}"
