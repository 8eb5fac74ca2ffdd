"""Exports, pushes and Ollama imports whose worker died are failed by the beat task with a clear message; fresh or
finished ones are left alone (real PostgreSQL; the beat task's service called directly and through Celery's name)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from models_app.models import BaseModel, FineTunedModel, HubPush, ModelExport, OllamaImport, TaskStatus
from models_app.reclaim import reclaim_stale_tasks
from models_app.tasks.exports import reclaim_stale

pytestmark = pytest.mark.django_db


def _model(owner: Any) -> FineTunedModel:
    return FineTunedModel.objects.create(
        owner=owner,
        name="reclaim-me",
        version=1,
        base_model=BaseModel.objects.ensure_embedded(),
        method="sft",
        weights="lora",
        metrics={},
        hyperparameters={},
    )


def _aged(row: Any, *, hours: float, started: bool) -> Any:
    then = timezone.now() - timedelta(hours=hours)
    type(row).objects.filter(pk=row.pk).update(created=then, started=then if started else None)
    return type(row).objects.get(pk=row.pk)


def test_stale_tasks_fail_with_a_message_and_fresh_or_finished_ones_stay(user: Any, settings: Any) -> None:
    settings.EXPORT_STALE_S = 3600
    settings.HF_PUSH_STALE_SECONDS = 7200
    model = _model(user)
    dead_export = _aged(
        ModelExport.objects.create(
            owner=user, model=model, format="gguf", quantization="q8_0", status=TaskStatus.RUNNING, progress=0.4
        ),
        hours=2,
        started=True,
    )
    lost_import = _aged(
        OllamaImport.objects.create(owner=user, model=model, ollama_name="mine:latest"), hours=1.5, started=False
    )  # still queued: its message was lost
    dead_push = _aged(
        HubPush.objects.create(owner=user, model=model, repo_id="me/mine", status=TaskStatus.RUNNING),
        hours=3,
        started=True,
    )
    young_push = _aged(
        HubPush.objects.create(owner=user, model=model, repo_id="me/other", status=TaskStatus.RUNNING),
        hours=1.5,
        started=True,
    )  # under 2 h
    fresh_export = ModelExport.objects.create(owner=user, model=model, format="adapter", status=TaskStatus.RUNNING)
    done_export = _aged(
        ModelExport.objects.create(owner=user, model=model, format="merged", status=TaskStatus.SUCCEEDED),
        hours=5,
        started=True,
    )

    counts = reclaim_stale_tasks()
    assert counts == {"export": 1, "Ollama import": 1, "push to Hugging Face": 1}

    row = ModelExport.objects.get(pk=dead_export.pk)
    assert row.status == TaskStatus.FAILED and row.finished is not None
    assert "export stopped without finishing: no result after 1 h" in row.error and "Start it again" in row.error
    row = OllamaImport.objects.get(pk=lost_import.pk)
    assert row.status == TaskStatus.FAILED and "Ollama import stopped without finishing" in row.error
    row = HubPush.objects.get(pk=dead_push.pk)
    assert row.status == TaskStatus.FAILED and row.retryable and "after 2 h" in row.error and "(Retry)" in row.error
    assert HubPush.objects.get(pk=young_push.pk).status == TaskStatus.RUNNING
    assert ModelExport.objects.get(pk=fresh_export.pk).status == TaskStatus.RUNNING
    assert ModelExport.objects.get(pk=done_export.pk).status == TaskStatus.SUCCEEDED

    # idempotent: a second beat finds nothing more, and the Celery task runs the same service
    assert reclaim_stale.apply().get() == {"export": 0, "Ollama import": 0, "push to Hugging Face": 0}
