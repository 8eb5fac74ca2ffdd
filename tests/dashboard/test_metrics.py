"""/metrics: refused without the scraper's token or an allowed address; the platform's numbers come from the
database and the broker (jobs by state, queue lengths, running jobs' tokens/s, export outcomes), next to the web
request metrics of django-prometheus."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import TrainingJobFactory
from training.models import MetricPoint

pytestmark = pytest.mark.django_db


def test_metrics_are_refused_without_the_token_or_an_allowed_address(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "s3cret-scrape", []
    client = Client()
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-scrape").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape").status_code == 200
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", ["10.0.0.0/8"]
    assert client.get("/metrics").status_code == 403  # 127.0.0.1 is not in the list
    settings.METRICS_ALLOWED_IPS = ["127.0.0.0/8"]
    assert client.get("/metrics").status_code == 200


def test_metrics_count_jobs_queues_throughput_and_requests(settings, user):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", ["127.0.0.1"]
    running = TrainingJobFactory(owner=user, status="running", lease_owner="w1")
    MetricPoint.objects.create(
        job=running, seq=1, kind="metric", step=1, loss=2.0, tokens_per_s=123.5, time=running.created
    )
    TrainingJobFactory(owner=user, status="failed")
    client = Client()
    client.get("/api/health/")
    body = client.get("/metrics").content.decode()
    assert 'finetune_training_jobs{backend="local",state="running"} 1.0' in body
    assert 'finetune_training_jobs{backend="local",state="failed"} 1.0' in body
    assert f'finetune_training_job_tokens_per_second{{backend="local",job_id="{running.pk}"}} 123.5' in body
    assert 'finetune_celery_queue_length{queue="training"}' in body
    assert 'finetune_exports{status="succeeded"} 0.0' in body
    assert "django_http_requests_total_by_method_total" in body  # django-prometheus, this process
