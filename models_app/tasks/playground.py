"""Celery tasks: playground (thin: each calls a service function)."""

from __future__ import annotations
