"""Recording operator actions in the audit log (accounts.AuditLog)."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import models

from .models import AuditLog

logger = logging.getLogger(__name__)


def record(
    actor: Any,
    action: str,
    target: models.Model | None = None,
    *,
    target_type: str = "",
    target_id: str | int = "",
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Write one audit entry: ``actor`` (a user or None for the system) did ``action`` to ``target``."""
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or target.pk
    user = actor if getattr(actor, "pk", None) is not None else None
    entry = AuditLog.objects.create(
        actor=user,
        actor_username=getattr(user, "username", "") or "",
        action=action[:64],
        target_type=target_type[:64],
        target_id=str(target_id)[:64],
        target_repr=(str(target) if target is not None else "")[:200],
        details=json.loads(json.dumps(details or {}, default=str)),  # JSON-safe (datetimes, decimals)
    )
    logger.info("audit: %s %s %s:%s", entry.actor_username or "system", action, entry.target_type, entry.target_id)
    return entry


class AuditedAdminMixin:
    """For a ModelAdmin: deletions from the admin (the change page and the bulk action) are written to the audit log.
    Subclasses may override ``delete_one`` to go through a service."""

    audit_prefix = ""  # e.g. "dataset"; defaults to the model name

    def _audit_action(self, name: str) -> str:
        prefix = self.audit_prefix or self.model._meta.model_name  # type: ignore[attr-defined]
        return f"{prefix}.{name}"

    def delete_one(self, request: Any, obj: models.Model) -> None:
        obj.delete()

    def delete_model(self, request: Any, obj: models.Model) -> None:
        pk, text = obj.pk, str(obj)
        self.delete_one(request, obj)
        record(
            request.user,
            self._audit_action("delete"),
            target_type=obj._meta.label_lower,
            target_id=pk,
            details={"repr": text},
        )

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for obj in queryset:
            self.delete_model(request, obj)
