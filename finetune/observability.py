"""Logs and error reporting for every process (web, workers, beat), configured from the environment by settings.

- ``LOG_FORMAT=json``: one JSON object per line with ``time``, ``level``, ``logger``, ``message`` and, where known,
  ``job_id``, ``user_id`` (bound with ``log_context`` around a job's run) and ``task_id`` (the Celery task being run);
  ``plain`` (the default) keeps the readable text lines.
- ``SENTRY_DSN``: errors go to Sentry with the Django and Celery integrations (no personal data; traces only when
  ``SENTRY_TRACES_SAMPLE_RATE`` > 0). Unset, Sentry is never initialised.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("finetune_log_context", default=None)
CONTEXT_FIELDS = ("job_id", "user_id", "task_id")


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (job_id, user_id, ...) to every log record made in this context."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _celery_task_id() -> str | None:
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - Celery is installed with the platform
        return None
    request = getattr(current_task, "request", None) if current_task else None
    return getattr(request, "id", None)


class ContextFilter(logging.Filter):
    """Puts the bound fields and the current Celery task id on each record (None where unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _CONTEXT.get() or {}
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, bound.get(name))
        if record.task_id is None:  # type: ignore[attr-defined]
            record.task_id = _celery_task_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def logging_config(fmt: str, level: str) -> dict[str, Any]:
    """The LOGGING dict: ``fmt`` is "json" or "plain"."""
    if fmt not in ("json", "plain"):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"LOG_FORMAT must be 'json' or 'plain', got {fmt!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "finetune.observability.ContextFilter"}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "json": {"()": "finetune.observability.JsonFormatter"},
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": fmt, "filters": ["context"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
    }


def init_sentry(dsn: str | None, *, environment: str, traces_sample_rate: float) -> bool:
    """Start Sentry with the Django and Celery integrations when ``dsn`` is set; True when it was started."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        integrations=[DjangoIntegration(), CeleryIntegration()],
    )
    return True
