"""Celery tasks: exports and Ollama imports (thin: each calls one service; idempotent by run token)."""

from __future__ import annotations

from celery import shared_task

from models_app import exports, ollama
from models_app.reclaim import reclaim_stale_tasks


@shared_task(name="models_app.tasks.exports.run_export", acks_late=True, reject_on_worker_lost=True)
def run_export(export_id: int, run_token: str) -> None:
    """Run one export (adapter, merged or verified GGUF); a repeated delivery is a no-op."""
    exports.run_export(export_id, run_token)


@shared_task(name="models_app.tasks.exports.run_ollama_import", acks_late=True, reject_on_worker_lost=True)
def run_ollama_import(import_id: int, run_token: str) -> None:
    """Run one Ollama import (verified GGUF, blob, create, golden-prompt check); a repeated delivery is a no-op."""
    ollama.run_ollama_import(import_id, run_token)


@shared_task(name="models_app.tasks.exports.reclaim_stale")
def reclaim_stale() -> dict[str, int]:
    """Beat: fail exports, pushes and imports whose worker died (see models_app.reclaim)."""
    return reclaim_stale_tasks()
