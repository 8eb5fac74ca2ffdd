"""Celery tasks: hub (thin: each calls a service function)."""

from __future__ import annotations
