"""Reclaiming model tasks (exports, Hub pushes, Ollama imports) whose worker died.

These tasks have no lease of their own: a worker that is killed mid-export leaves its row ``running`` (or a lost
message leaves it ``queued``) for ever, and the user's page shows a progress bar that never moves. A periodic beat
task fails every such row once it is older than any real run takes (``EXPORT_STALE_S`` for exports and imports,
``HF_PUSH_STALE_SECONDS`` for pushes), with a message saying what to do; a push is then retryable. A run that was
only slow and finishes afterwards keeps the verdict the row already has (exports) or records its real outcome.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.realtime import publish_task_progress
from models_app.models import HubPush, ModelExport, ModelTask, OllamaImport, TaskStatus

logger = logging.getLogger(__name__)

# (model, label shown to the user, progress kind on the user's socket, setting with the age limit in seconds)
_TASKS: tuple[tuple[type[ModelTask], str, str, str], ...] = (
    (ModelExport, "export", "export", "EXPORT_STALE_S"),
    (OllamaImport, "Ollama import", "ollama-import", "EXPORT_STALE_S"),
    (HubPush, "push to Hugging Face", "push", "HF_PUSH_STALE_SECONDS"),
)


def _age(seconds: int) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds // 60} min"


def reclaim_stale_tasks(now: datetime | None = None) -> dict[str, int]:
    """Fail every queued/running export, push and import older than its limit; return how many of each."""
    now = now or timezone.now()
    counts: dict[str, int] = {}
    for model, label, kind, setting in _TASKS:
        limit = int(getattr(settings, setting))
        cutoff = now - timedelta(seconds=limit)
        stale = Q(status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING]) & (
            Q(started__lt=cutoff) | Q(started__isnull=True, created__lt=cutoff)
        )
        rows = list(model.objects.filter(stale).values_list("pk", "owner_id", "progress"))
        updates = {
            "status": TaskStatus.FAILED,
            "finished": now,
            "stage": "stopped",
            "error": (
                f"The {label} stopped without finishing: no result after {_age(limit)}, so its worker is presumed "
                f"gone. Start it again{' (Retry)' if model is HubPush else ''}."
            ),
        }
        if model is HubPush:
            updates["retryable"] = True
        done = 0
        for pk, owner_id, progress in rows:
            # the same condition again, row by row: a task that finished meanwhile keeps its outcome
            if model.objects.filter(stale, pk=pk).update(**updates):
                done += 1
                publish_task_progress(owner_id, kind=kind, task_id=pk, progress=progress, status=TaskStatus.FAILED)
                logger.warning("%s %s: reclaimed (no result after %s)", label, pk, _age(limit))
        counts[label] = done
    return counts
