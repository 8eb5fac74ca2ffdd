"""Celery tasks: exports (thin: each calls a service function)."""

from __future__ import annotations
