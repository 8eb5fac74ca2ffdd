"""The web tier under load, through the real entry point (`python -m finetune.serve`: daphne workers on one socket,
a psycopg pool per worker): an exhausted pool answers 503 JSON, never a 500 or a debug page; the tier never holds more
connections than workers x pool size and is healthy again within seconds; a short load shows no 5xx."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from tests.processes import run_async, server_env, start_daphne, stop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def _token_user(username: str) -> tuple[Any, str]:
    from accounts.models import ApiToken, hash_token_key
    from tests.factories import UserFactory

    user = UserFactory(username=username)
    key = f"ft_{uuid.uuid4().hex}"
    ApiToken.objects.create(user=user, name="load", prefix=key[:10], key_hash=hash_token_key(key))
    return user, key


def _jobs(user: Any, n: int, points: int = 0) -> list[int]:
    from datetime import UTC, datetime

    from datasets_app.models import Dataset
    from models_app.models import BaseModel
    from training.models import MetricPoint, TrainingJob

    base = BaseModel.objects.ensure_embedded()
    ds = Dataset.objects.create(owner=user, name="d", status="ready", format="alpaca")
    jobs = TrainingJob.objects.bulk_create(
        [
            TrainingJob(owner=user, name=f"j{i}", base_model=base, dataset=ds, method="sft", weights="lora")
            for i in range(n)
        ]
    )
    now = datetime.now(UTC)
    MetricPoint.objects.bulk_create(
        [MetricPoint(job=jobs[0], seq=k + 1, step=k, loss=1.0, time=now) for k in range(points)]
    )
    return [j.pk for j in jobs]


def _get(url: str, token: str | None = None, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@contextlib.contextmanager
def _jobs_table_locked(db: str, *, seconds: float) -> Iterator[None]:
    """Another client holds an exclusive lock on the jobs table for `seconds`, then lets go."""
    locker = psycopg.connect(dbname=db, host="127.0.0.1", user="postgres")
    locker.execute("LOCK TABLE training_trainingjob IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(seconds, locker.commit)
    release.start()
    try:
        yield
    finally:
        release.join()
        locker.close()


def _web_connections(dsn_db: str, app_name: str) -> int:
    with psycopg.connect(dbname=dsn_db, host="127.0.0.1", user="postgres", autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app_name]).fetchone()
        return int(row[0]) if row else 0


def test_an_exhausted_pool_answers_503_json_and_the_tier_recovers(test_db_name: str, tmp_path: Any) -> None:
    user, token = _token_user("pooluser")
    _jobs(user, 3)
    app_name = f"ft-pooltest-{uuid.uuid4().hex[:8]}"
    workers, pool = 2, 2
    env = server_env(
        test_db_name,
        DB_POOL_MAX_SIZE=str(pool),
        DB_POOL_TIMEOUT_S="1",
        DB_APPLICATION_NAME=app_name,
        WEB_QUEUE_TIMEOUT_S="30",
    )
    proc, port = start_daphne(env, tmp_path / "web.log", workers=workers, extra_args=("--threads", "8"))
    base = f"http://127.0.0.1:{port}"
    try:
        # A long-running writer holds the jobs table: every job-list request that gets a connection waits on it,
        # holding its pooled connection, so the others cannot get one within DB_POOL_TIMEOUT_S.
        with _jobs_table_locked(test_db_name, seconds=4.0), ThreadPoolExecutor(max_workers=16) as pool_exec:
            results = list(pool_exec.map(lambda _: _get(f"{base}/api/training/jobs/", token), range(16)))
        codes = sorted(code for code, _, _ in results)
        assert set(codes) <= {200, 503}, codes
        assert codes.count(503) >= 1 and codes.count(200) >= 1, codes
        busy = next((h, b) for c, h, b in results if c == 503)
        body = json.loads(busy[1])
        assert "every database connection is in use" in body["detail"] and body["errors"] == {}
        assert busy[0].get("Retry-After") and busy[0].get("Content-Type", "").startswith("application/json")
        assert len(busy[1]) < 500  # a plain message, not a debug page

        # Healthy again within seconds, holding no more connections than the pools allow.
        t0 = time.monotonic()
        while _get(f"{base}/api/health/")[0] != 200:
            assert time.monotonic() - t0 < 10, "health not green 10 s after the burst"
            time.sleep(0.2)
        assert _get(f"{base}/api/training/jobs/", token)[0] == 200
        assert 0 < _web_connections(test_db_name, app_name) <= workers * pool
    finally:
        stop(proc)


def test_twenty_users_for_fifteen_seconds_get_no_server_error(daphne_url: str) -> None:
    from bench.load import LoadUser, report, run_load

    users = []
    for i in range(4):
        user, token = _token_user(f"smoke{i}")
        ids = _jobs(user, 30, points=200 if i == 0 else 20)
        users.append(LoadUser(token=token, job_ids=ids, big_job_ids=ids[:2]))
    results = run_async(run_load(daphne_url, [users[i % 4] for i in range(20)], duration=15, think=0.05))
    lines = "\n".join(report(results))
    assert results.total > 100, lines
    assert results.server_errors == 0 and results.count(lambda s: s.startswith("5")) == 0, lines
    assert results.count(lambda s: s != "200") == 0, lines + "\n" + "\n".join(results.bad_bodies)


def test_a_request_that_waits_too_long_for_a_thread_gets_503_and_a_dead_worker_is_replaced(
    test_db_name: str, tmp_path: Any
) -> None:
    import os
    import signal

    import psutil

    user, token = _token_user("busyuser")
    _jobs(user, 2)
    env = server_env(test_db_name, WEB_QUEUE_TIMEOUT_S="0.5", DB_POOL_TIMEOUT_S="20")
    proc, port = start_daphne(env, tmp_path / "web.log", workers=1, extra_args=("--threads", "1"))
    base = f"http://127.0.0.1:{port}"
    try:
        with _jobs_table_locked(test_db_name, seconds=3.0), ThreadPoolExecutor(max_workers=4) as pool_exec:
            slow = pool_exec.submit(_get, f"{base}/api/training/jobs/", token)  # takes the only request thread
            time.sleep(0.5)
            waiting = [pool_exec.submit(_get, f"{base}/api/training/presets/", token) for _ in range(3)]
            busy = [f.result() for f in waiting]
            assert slow.result()[0] == 200
        assert [c for c, _, _ in busy] == [503, 503, 503]
        assert json.loads(busy[0][2])["detail"] == "The server is busy right now; try again in a few seconds."
        assert busy[0][1].get("Retry-After")

        # The supervisor starts another daphne worker when one dies.
        child = psutil.Process(proc.pid).children()[0]
        os.kill(child.pid, signal.SIGKILL)
        t0 = time.monotonic()
        while True:
            children = [c for c in psutil.Process(proc.pid).children() if c.pid != child.pid]
            if children and _get(f"{base}/api/training/presets/", token, timeout=5)[0] == 200:
                break
            assert time.monotonic() - t0 < 60, "no replacement worker"
            time.sleep(0.5)
    finally:
        stop(proc)
