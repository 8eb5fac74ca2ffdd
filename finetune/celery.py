"""The Celery application: queues `default`, `training` and `inference` (playground generation), configured from
Django settings (CELERY_*)."""

from __future__ import annotations

import os

from celery import Celery, signals
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finetune.settings")

app = Celery("finetune")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (
    Queue("default", Exchange("default"), routing_key="default"),
    Queue("training", Exchange("training"), routing_key="training"),
    Queue("inference", Exchange("inference"), routing_key="inference"),
)

# Playground generation: its own workers keep models loaded between requests.
INFERENCE_ROUTES = {"models_app.tasks.playground.*": {"queue": "inference"}}


@app.on_after_configure.connect
def _add_inference_routes(sender: Celery, **kwargs: object) -> None:
    sender.conf.task_routes = {**(sender.conf.task_routes or {}), **INFERENCE_ROUTES}


app.autodiscover_tasks()


@signals.setup_logging.connect
def _use_django_logging(**kwargs: object) -> None:
    """Workers log like the web processes (settings.LOGGING: LOG_FORMAT plain or json, with job_id and task_id)
    instead of Celery's own root-logger setup."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
