"""Celery tasks: Hub downloads and pushes (thin: each takes ids and calls one service in models_app.hub)."""

from __future__ import annotations

from celery import shared_task

from models_app import hub


@shared_task(name="models_app.tasks.hub.download_base_model", acks_late=True, reject_on_worker_lost=True)
def download_base_model(base_model_id: int, user_id: int) -> None:
    """Download a Hub model into the shared cache with the requesting user's token (idempotent)."""
    hub.run_download(base_model_id, user_id)


@shared_task(name="models_app.tasks.hub.push_to_hub", acks_late=True, reject_on_worker_lost=True)
def push_to_hub(push_id: int, run_token: str) -> None:
    """Push a fine-tuned model to the Hub with its owner's token (idempotent per run token)."""
    hub.run_push(push_id, run_token)
