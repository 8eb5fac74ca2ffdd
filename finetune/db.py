"""Database connection helpers shared by the web tier and services."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, close_old_connections, connection, connections

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How long a long-lived thread (a training run) waits for PostgreSQL to come back before one write gives up: the
# pauses between tries, about 25 s in all (a restart or a failover takes a few seconds).
DB_RETRY_PAUSES_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0)


def release_db_connections() -> None:
    """Give this thread's database connections back (to the pool, in web processes) unless inside a transaction.
    For code about to wait a long time without the database (a streamed download, the playground's one-shot answer):
    a pooled connection held idle is one another request cannot have."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def retry_on_lost_connection(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Call `fn` (a service that owns its transaction and may run again harmlessly); when the database connection
    broke (a PostgreSQL restart terminates every session), drop it and try again on a new one.

    Django checks a persistent connection only when a request or a Celery task starts; a thread that works for hours
    (a training run) would otherwise keep the dead connection and fail every later query."""
    for pause in (*DB_RETRY_PAUSES_S, None):
        try:
            return fn(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if pause is None or connection.in_atomic_block:  # inside a caller's transaction: the caller decides
                raise
            logger.warning("database unavailable (%s); trying again in %.1f s", str(exc).strip(), pause)
            close_old_connections()  # closes this thread's connections that no longer answer
            time.sleep(pause)
    raise AssertionError("unreachable")
