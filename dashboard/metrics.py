"""Prometheus metrics at `/metrics`, for operators (a scraper with METRICS_TOKEN or from METRICS_ALLOWED_IPS).

Two sources in one page:
- the platform, read from PostgreSQL and the broker at scrape time (so every web process answers the same): training
  jobs by state and backend, messages waiting per Celery queue, each running job's latest tokens/s, and export,
  Hub push and Ollama import outcomes by status;
- the web requests of this process, counted by django-prometheus' middleware (requests, latencies, responses by
  status); with PROMETHEUS_MULTIPROC_DIR set (several web processes), those of every process.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from accounts.signin import client_ip
from models_app.models import HubPush, ModelExport, OllamaImport, TaskStatus
from training.models import MetricPoint, TrainingJob

logger = logging.getLogger(__name__)

# The Celery queues whose waiting messages are counted (the broker's Redis lists of the same name).
QUEUES = ("default", "training", "inference")


def queue_lengths() -> dict[str, int | None]:
    """Messages waiting per Celery queue (None when the broker cannot be read)."""
    import redis

    queues = dict.fromkeys((*QUEUES, settings.NOTIFICATIONS_QUEUE))
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
        with client.pipeline() as pipe:
            for name in queues:
                pipe.llen(name)
            for name, length in zip(queues, pipe.execute(), strict=True):
                queues[name] = int(length)
    except Exception as exc:  # a scrape must answer even when the broker is down
        logger.warning("metrics: cannot read the Celery queues: %s", exc)
    return queues


class PlatformCollector:
    """The platform's state, computed when scraped."""

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "finetune_training_jobs", "Training jobs by state and backend", labels=["state", "backend"]
        )
        counts = {
            (s, b): n for s, b, n in TrainingJob.objects.values_list("status", "backend").annotate(n=Count("id"))
        }
        for state in TrainingJob.Status.values:
            for backend in TrainingJob.Backend.values:
                jobs.add_metric([state, backend], counts.get((state, backend), 0))
        yield jobs

        waiting = GaugeMetricFamily(
            "finetune_celery_queue_length", "Messages waiting in each Celery queue", labels=["queue"]
        )
        for queue, length in queue_lengths().items():
            if length is not None:
                waiting.add_metric([queue], length)
        yield waiting

        latest = MetricPoint.objects.filter(job=OuterRef("pk"), kind="metric", tokens_per_s__isnull=False)
        running = (
            TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING)
            .annotate(tps=Subquery(latest.order_by("-seq").values("tokens_per_s")[:1]))
            .values_list("pk", "backend", "tps")
        )
        speed = GaugeMetricFamily(
            "finetune_training_job_tokens_per_second",
            "Latest training throughput of each running job",
            labels=["job_id", "backend"],
        )
        for pk, backend, tps in running:
            if tps is not None:
                speed.add_metric([str(pk), backend], float(tps))
        yield speed

        for model, name, what in (
            (ModelExport, "exports", "Model exports"),
            (HubPush, "hub_pushes", "Hub pushes"),
            (OllamaImport, "ollama_imports", "Ollama imports"),
        ):
            family = GaugeMetricFamily(f"finetune_{name}", f"{what} by status", labels=["status"])
            by_status = dict(model.objects.values_list("status").annotate(n=Count("id")))
            for status in TaskStatus.values:
                family.add_metric([status], by_status.get(status, 0))
            yield family


def _allowed(request: HttpRequest) -> bool:
    token = str(settings.METRICS_TOKEN or "")
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return True
    networks = settings.METRICS_ALLOWED_IPS
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def _process_registry() -> Any:
    """The web-request metrics: every process's (multiprocess mode) or this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics` in Prometheus' text format; 403 without the token or an allowed address."""
    if not _allowed(request):
        return HttpResponse(
            "Forbidden: send Authorization: Bearer <METRICS_TOKEN>, or scrape from an address in "
            "METRICS_ALLOWED_IPS.\n",
            status=403,
            content_type="text/plain",
        )
    platform = CollectorRegistry(auto_describe=False)
    platform.register(PlatformCollector())
    body = generate_latest(platform) + generate_latest(_process_registry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
