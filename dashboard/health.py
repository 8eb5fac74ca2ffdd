"""Service health: the database, Redis and how many Celery workers answer a ping."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from training import operations

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    """The platform's health as `/api/health/` reports it."""

    database: bool
    redis: bool
    workers: int

    @property
    def status(self) -> str:
        return "ok" if self.database and self.redis and self.workers > 0 else "degraded"


def check_database() -> bool:
    """True when PostgreSQL answers a trivial query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception as exc:
        logger.warning("health: database check failed: %s", exc)
        return False


def check_redis() -> bool:
    """True when the Redis that carries the Celery broker answers PING."""
    import redis

    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as exc:
        logger.warning("health: redis check failed: %s", exc)
        return False


def get_health() -> Health:
    """Check every dependency (workers only when Redis answers, since the ping travels through it)."""
    db = check_database()
    rd = check_redis()
    workers = operations.count_workers() if rd else 0
    return Health(database=db, redis=rd, workers=workers)
