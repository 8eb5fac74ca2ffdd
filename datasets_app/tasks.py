"""Celery entry points for datasets (thin: each takes an id and calls one service)."""

from __future__ import annotations

from celery import shared_task

from . import processing


@shared_task(name="datasets_app.tasks.process_dataset", acks_late=True, reject_on_worker_lost=True)
def process_dataset(dataset_id: int, run_token: str) -> None:
    """Validate a dataset version (building it first for preprocess/split versions); idempotent per run token."""
    processing.process_dataset(dataset_id, run_token)
