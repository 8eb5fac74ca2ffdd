"""Metric points and log lines of a job after a given `seq`, for charts and for a client catching up after a
reconnect.

This is the heaviest read of a live dashboard (a chart loads up to METRICS_PAGE_MAX points at once), so PostgreSQL
builds the JSON array itself, straight from the (job, seq) unique index, and the view sends that text as it is: no
model instances, no per-row Python, no serializer; and a page that can no longer change is kept in the shared cache
(see _json_array). Measured on the 2-core dev machine for a 1,000-point page: 24 ms through the ORM and DRF, about
6 ms this way (most of it in PostgreSQL). The shape is the API's: each point's `extra`
numbers are merged into it, timestamps are ISO 8601 in UTC with a `Z`, and a non-finite float (a diverged loss) is
written as the string "NaN"/"Infinity" instead of breaking the JSON.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import connection

_UTC = "to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
# Points without engine extras (most) go through to_json; the rest are merged as jsonb (extras win, as before).
_METRICS_SQL = (
    "SELECT count(*), max(m.seq), coalesce(json_agg(CASE WHEN m.extra = '{}'::jsonb OR jsonb_typeof(m.extra) <> 'object' THEN to_json(r) "
    "ELSE (to_jsonb(r) || m.extra)::json END ORDER BY m.seq), '[]')::text "
    "FROM (SELECT * FROM training_metricpoint WHERE job_id = %s AND seq > %s ORDER BY seq LIMIT %s) m, "
    "LATERAL (SELECT m.seq, m.kind, m.step, m.epoch, m.loss, m.eval_loss, m.learning_rate, m.grad_norm, m.memory_mb, "
    f"m.tokens_per_s, m.eta_s, {_UTC.format(col='m.time')} AS time) r"
)
_LOGS_SQL = (
    "SELECT count(*), max(r.seq), coalesce(json_agg(r ORDER BY r.seq), '[]')::text FROM (SELECT seq, level, line, "
    f"{_UTC.format(col='time')} AS time FROM training_logline WHERE job_id = %s AND seq > %s ORDER BY seq LIMIT %s) r"
)


def page_limit(requested: int | None) -> int:
    """Rows per page: the client's `limit` when given, capped at METRICS_PAGE_MAX."""
    cap = max(1, int(settings.METRICS_PAGE_MAX))
    return cap if requested is None else max(1, min(cap, requested))


def _json_array(kind: str, sql: str, job_id: int, after_seq: int, limit: int | None, last_seq: int) -> str:
    """The page as JSON text, from the shared cache when an earlier request made the same one.

    Points are append-only and numbered without gaps, so a page is final once it is full or reaches the job's last
    seq (`last_seq`, read with the job): such pages are cached for BACKFILL_CACHE_S under a key that includes
    `last_seq`, so a job that logs more points simply uses new keys. A page still missing a point that the job's
    counter already announced (written a moment later) is never cached."""
    after_seq, limit = max(0, after_seq), page_limit(limit)
    ttl = int(settings.BACKFILL_CACHE_S)
    key = f"backfill:{kind}:{job_id}:{after_seq}:{limit}:{last_seq}"
    if ttl > 0 and (cached := cache.get(key)) is not None:
        return str(cached)
    with connection.cursor() as cursor:
        cursor.execute(sql, [job_id, after_seq, limit])
        count, max_seq, text = cursor.fetchone()
    final = count == limit or (max_seq or after_seq) >= last_seq
    if ttl > 0 and final:
        cache.set(key, text, ttl)
    return str(text)


def metric_points_json(job_id: int, *, after_seq: int, limit: int | None = None, last_seq: int) -> str:
    """A JSON array of the points with seq > after_seq, in order, at most `limit` (see page_limit); `last_seq` is
    the job's metric_seq."""
    return _json_array("metrics", _METRICS_SQL, job_id, after_seq, limit, last_seq)


def log_lines_json(job_id: int, *, after_seq: int, limit: int | None = None, last_seq: int) -> str:
    """A JSON array of the log lines with seq > after_seq, in order; `last_seq` is the job's log_seq."""
    return _json_array("logs", _LOGS_SQL, job_id, after_seq, limit, last_seq)
