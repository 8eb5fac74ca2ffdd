"""`/api/health/` against the real services, and a real Redis going down."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.processes import free_port, wait_for_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_health_is_green_with_database_redis_and_a_worker(api_client, celery_worker_process):
    r = api_client.get("/api/health/")
    assert r.status_code == 200
    body = r.json()
    assert body["database"] is True and body["redis"] is True
    assert body["workers"] >= 1 and body["status"] == "ok"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server binary not installed")
def test_health_reports_redis_going_down(api_client, settings, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
        up = api_client.get("/api/health/").json()
        assert up["redis"] is True and up["database"] is True
        assert up["workers"] == 0 and up["status"] == "degraded"  # no worker listens on this broker
        proc.terminate()
        proc.wait(10)
        started = time.monotonic()
        r = api_client.get("/api/health/")
        assert time.monotonic() - started < 5  # fails fast, does not hang
        assert r.status_code == 503
        assert r.json() == {"status": "degraded", "database": True, "redis": False, "workers": 0}
    finally:
        proc.kill()


def test_health_needs_no_authentication(api_client):
    assert api_client.get("/api/health/").status_code in (200, 503)
