"""Database connection helpers shared by the web tier and services."""

from __future__ import annotations

from django.db import connections


def release_db_connections() -> None:
    """Give this thread's database connections back (to the pool, in web processes) unless inside a transaction.
    For code about to wait a long time without the database (a streamed download, the playground's one-shot answer):
    a pooled connection held idle is one another request cannot have."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
