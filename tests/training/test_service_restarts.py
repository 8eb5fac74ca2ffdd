"""Fault tests: Redis or PostgreSQL restarts while a real Celery worker trains a job. Each test runs its own
throwaway server (never the machine's shared ones), waits for the job's first metric point, restarts the server
mid-run and checks that the job still succeeds, that its stored events keep one gapless `seq` each, and that live
metrics reach a websocket client that connects after the restart."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from django.db import connection

from tests.clients import post_json, register_session
from tests.factories import TINY_HYPER, make_ready_dataset
from tests.processes import (
    ROOT,
    free_port,
    run_async,
    server_env,
    start_celery_worker,
    start_daphne,
    stop,
    wait_for_port,
)

pytestmark = [pytest.mark.e2e]

# Long enough to restart a server while it trains; no evaluation and one checkpoint keep each step short.
HYPER = {**TINY_HYPER, "max_steps": 8, "save_steps": 4, "eval_steps": 1000}
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
FINISHED = ("succeeded", "failed", "cancelled")


class ThrowawayRedis:
    """A private redis-server on a free port (no persistence: a restart loses everything, as a crashed one does)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, self.proc, timeout=20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    server.kill()


class ThrowawayPostgres:
    """A private PostgreSQL cluster (initdb, trust auth) on a free port, run as the `postgres` user."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="finetune-pg-restart-", dir="/tmp"))
        shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-w",
                "-l",
                str(self.dir / "server.log"),
                *args,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.pg_ctl("start", "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off")

    def restart(self) -> None:
        """Stop (fast: every session is terminated) and start again, as after a crash or an upgrade."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def query(self, sql: str, *params: object) -> list[tuple]:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="restarts", connect_timeout=5
        ) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    if PG_BIN is None or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and the PostgreSQL server binaries to run a throwaway PostgreSQL")
    server = ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _wait(what: str, check, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_redis_restart_mid_run_job_succeeds_and_live_metrics_resume(throwaway_redis, test_db_name, tmp_path):
    from models_app.models import BaseModel
    from training.models import TrainingJob

    env = server_env(test_db_name, REDIS_URL=throwaway_redis.url, TRAINING_HEARTBEAT_SECONDS="1")
    web, port = start_daphne(env, tmp_path / "daphne.log")
    worker, _ = start_celery_worker(
        env, tmp_path / "worker.log", queues="training", broker_url=f"{throwaway_redis.url}/10"
    )
    try:
        url = f"http://127.0.0.1:{port}"
        s = register_session(url, "redisrestart")
        from accounts.models import User

        ds = make_ready_dataset(User.objects.get(username="redisrestart"))
        base = BaseModel.objects.ensure_embedded()
        cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())

        def points(after: int = 0) -> list[dict]:
            r = s.get(f"{url}/api/training/jobs/{job_id}/metrics/", params={"after_seq": after})
            assert r.status_code == 200, r.text
            return r.json()

        r = post_json(
            s,
            url,
            "/api/training/jobs/",
            {
                "name": "redis",
                "base_model": base.pk,
                "dataset": ds.pk,
                "method": "sft",
                "weights": "lora",
                "hyperparameters": HYPER,
            },
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        ws_url = url.replace("http://", "ws://") + f"/ws/training/{job_id}/"

        def restart_redis() -> TrainingJob:
            throwaway_redis.kill()  # the broker, the channel layer and the cache vanish with all their data
            time.sleep(2)
            throwaway_redis.start()
            try:
                return TrainingJob.objects.get(pk=job_id)
            finally:
                connection.close()  # this helper thread's own connection

        async def scenario() -> tuple[TrainingJob, list[dict], list[dict], str]:
            # A page open before the restart (its socket may be closed by it: the page then reconnects) ...
            async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, origin=url) as before:
                while json.loads(await asyncio.wait_for(before.recv(), 180))["type"] != "metric":
                    pass
                at_restart = await asyncio.to_thread(restart_redis)
                # ... and one opened after it, which must get every event from then on.
                metrics: list[dict] = []
                logs: list[dict] = []
                async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, origin=url) as ws:
                    while True:
                        msg = json.loads(await asyncio.wait_for(ws.recv(), 120))
                        if msg["type"] in ("metric", "log"):
                            (metrics if msg["type"] == "metric" else logs).append(msg)
                        elif msg["type"] == "status" and msg["status"] in FINISHED:
                            return at_restart, metrics, logs, msg["status"]
                raise AssertionError("unreachable")

        at_restart, live, live_logs, final_status = run_async(scenario())
        assert at_restart.status == "running", "the restart must happen while the job trains"
        restart_seq = at_restart.metric_seq
        stored = points()
    finally:
        stop(worker)
        stop(web)
    job = TrainingJob.objects.get(pk=job_id)
    assert job.status == "succeeded" == final_status, job.error
    assert job.attempts == 1
    # Stored: one point per step, `seq` 1..N without duplicates or holes (the backfill by seq sees all of them).
    seqs = [p["seq"] for p in stored]
    assert seqs == list(range(1, len(stored) + 1)) and job.metric_seq == len(stored)
    assert [p["step"] for p in stored if p["kind"] == "metric"] == list(range(1, HYPER["max_steps"] + 1))
    # Live: the socket opened after the restart got the points recorded from then on, in order, each once; what it
    # missed in between it backfills by seq.
    live_seqs = [m["seq"] for m in live]
    assert live_seqs, "no live metric after the Redis restart"
    assert live_seqs == sorted(set(live_seqs)) and live_seqs[-1] == len(stored)
    assert live_seqs[0] > restart_seq
    by_seq = {p["seq"]: p for p in stored}
    assert all(by_seq[m["seq"]]["step"] == m["step"] for m in live)
    # Once Redis is back no push is lost: the socket got every point and log line from its first one to the last (a
    # push that fails on a connection the restart left dead in the sender's pool is sent again on a new one).
    assert live_seqs == list(range(live_seqs[0], len(stored) + 1))
    log_seqs = sorted(m["seq"] for m in live_logs)
    assert log_seqs and log_seqs == list(range(log_seqs[0], job.log_seq + 1)), (log_seqs, job.log_seq)


def _task_ended(worker_log: Path) -> bool:
    """The worker's training task returned or raised (then the job will not change any more)."""
    return any(
        "Task training.tasks.run_training_job[" in line and ("] succeeded in" in line or "] raised" in line)
        for line in worker_log.read_text(errors="replace").splitlines()
    )


_SEED = """
from accounts.models import User
from models_app.models import BaseModel
from tests.factories import make_ready_dataset
from training import services
user = User.objects.create_user(username="pgrestart", email="pgrestart@example.com", password="x-Strong-pass-1")
ds = make_ready_dataset(user)
job = services.create_job(owner=user, name="pg", base_model_id=BaseModel.objects.ensure_embedded().pk,
                          dataset_id=ds.pk, hyperparameters=%r)
print("JOB", job.pk)
"""


def test_postgres_restart_mid_run_worker_reconnects_and_job_succeeds(throwaway_postgres, throwaway_redis, tmp_path):
    pg = throwaway_postgres
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE restarts")
    env = server_env(
        "restarts",
        POSTGRES_HOST="127.0.0.1",
        POSTGRES_PORT=str(pg.port),
        POSTGRES_USER="postgres",
        POSTGRES_PASSWORD="",
        REDIS_URL=throwaway_redis.url,
        TRAINING_HEARTBEAT_SECONDS="1",
        TRAINING_LEASE_SECONDS="20",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    worker, _ = start_celery_worker(
        env, tmp_path / "worker.log", queues="training", broker_url=f"{throwaway_redis.url}/10"
    )
    try:
        out = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", _SEED % (HYPER,)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        job_id = int(out.split("JOB", 1)[1].split()[0])
        _wait(
            "the first metric point",
            lambda: pg.query("SELECT 1 FROM training_metricpoint WHERE job_id = %s", job_id),
            180,
        )
        pg.restart()  # every connection of the worker (training thread, heartbeat) is terminated mid-run
        restarted_at = pg.query("SELECT now()")[0][0]
        assert pg.query("SELECT status FROM training_trainingjob WHERE id = %s", job_id)[0][0] == "running"
        _wait(
            "the job to finish",
            lambda: (
                pg.query(
                    "SELECT 1 FROM training_trainingjob WHERE id = %s AND status = ANY(%s)", job_id, list(FINISHED)
                )
                or _task_ended(tmp_path / "worker.log")
            ),
            180,
        )
    finally:
        stop(worker)
    status, error, attempts, heartbeat_at = pg.query(
        "SELECT status, error, attempts, heartbeat_at FROM training_trainingjob WHERE id = %s", job_id
    )[0]
    assert status == "succeeded", f"{error}\n{(tmp_path / 'worker.log').read_text()[-3000:]}"
    assert attempts == 1  # the lease survived the restart: no second attempt
    assert heartbeat_at > restarted_at  # the heartbeat thread reconnected
    rows = pg.query("SELECT seq, kind, step, time FROM training_metricpoint WHERE job_id = %s ORDER BY seq", job_id)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert [r[2] for r in rows if r[1] == "metric"] == list(range(1, HYPER["max_steps"] + 1))
    assert any(r[3] > restarted_at for r in rows)  # the training thread reconnected: points after the restart


@pytest.mark.django_db(transaction=True)
def test_a_dead_connection_is_replaced_and_the_call_retried():
    """The helper the training thread writes through: a connection PostgreSQL terminated is dropped, the next try
    gets a new one (without it every later query of that thread fails)."""
    import psycopg
    from django.db import OperationalError

    from finetune.db import retry_on_lost_connection
    from training.models import TrainingJob

    def kill_my_connection() -> None:
        pid = connection.cursor().connection.info.backend_pid
        params = connection.get_connection_params()
        with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        time.sleep(0.2)

    kill_my_connection()
    with pytest.raises(OperationalError):
        TrainingJob.objects.count()
    with pytest.raises(OperationalError):  # Django keeps the dead connection until something closes it
        TrainingJob.objects.count()
    assert retry_on_lost_connection(TrainingJob.objects.count) == 0
    kill_my_connection()
    assert retry_on_lost_connection(TrainingJob.objects.count) == 0
