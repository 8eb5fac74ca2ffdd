"""Celery tasks: playground (thin: each calls a service function). Routed to the `inference` queue
(finetune/celery.py), whose workers keep loaded models cached between requests."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from models_app import playground


# No late ack or redelivery: a generation lost with its worker is not worth replaying (its socket has moved on),
# and `run_generation` answers each request id at most once anyway.
@shared_task(
    name="models_app.tasks.playground.generate",
    acks_late=False,
    ignore_result=True,
    soft_time_limit=900,
    time_limit=960,
)
def generate(job: dict[str, Any]) -> None:
    """Answer one playground request, streaming its tokens to the requester's channel."""
    playground.run_generation(job)
