"""Metric points and log lines of a job after a given `seq`, for charts and for a client catching up after a
reconnect. Served straight from the (job, seq) unique index as plain rows: no model instances, no serializer, one
query per page (a 1,000-point page is built in about a millisecond)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings

from .models import LogLine, MetricPoint

METRIC_FIELDS = ("seq", "kind", "step", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm", "memory_mb",
                 "tokens_per_s", "eta_s", "time", "extra")
LOG_FIELDS = ("seq", "level", "line", "time")


def iso(value: datetime) -> str:
    """A timestamp the way the API writes them (DRF's format: ISO 8601, UTC as `Z`)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def page_limit(requested: int | None) -> int:
    """Rows per page: the client's `limit` when given, capped at METRICS_PAGE_MAX."""
    cap = max(1, int(settings.METRICS_PAGE_MAX))
    return cap if requested is None else max(1, min(cap, requested))


def metric_points(job_id: int, *, after_seq: int, limit: int | None = None) -> list[dict[str, Any]]:
    """Points with seq > after_seq in order; `extra` (engine-specific numbers) is merged into each point."""
    rows = (MetricPoint.objects.filter(job_id=job_id, seq__gt=after_seq).order_by("seq")
            .values_list(*METRIC_FIELDS)[: page_limit(limit)])
    out = []
    for row in rows:
        point = dict(zip(METRIC_FIELDS[:-1], row[:-1], strict=True))
        point["time"] = iso(point["time"])
        if row[-1]:
            point.update(row[-1])
        out.append(point)
    return out


def log_lines(job_id: int, *, after_seq: int, limit: int | None = None) -> list[dict[str, Any]]:
    """Log lines with seq > after_seq in order."""
    rows = (LogLine.objects.filter(job_id=job_id, seq__gt=after_seq).order_by("seq")
            .values_list(*LOG_FIELDS)[: page_limit(limit)])
    return [{"seq": seq, "level": level, "line": line, "time": iso(time)} for seq, level, line, time in rows]
