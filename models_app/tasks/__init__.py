"""Celery tasks of the models app (Celery's autodiscovery imports this package): one module per feature."""

from __future__ import annotations

from . import exports, hub, playground  # noqa: F401  (registers the tasks)
