"""Load benchmark of the web tier.

Seeds (or reuses) a database of 50 users with API tokens, 10,000 training jobs and 1,000,000 metric points (COPY),
starts the web tier the way `make run` does (`python -m finetune.serve`, or --server-cmd for another one, or --url
for one already running), then runs a bounded asyncio client on loopback: each user loops over the job list, a job's
detail, a 1,000-point metrics backfill, the dataset list and the dashboard stats, one keep-alive connection per
user, optionally pausing between requests like a browser polling a dashboard. Prints p50/p95/p99 per route,
requests/s, errors by status, PostgreSQL connections during and after the load, and how long /api/health/ took to be
green again.

    .venv/bin/python bench/load.py --scenario polling      # (a) 50 users, ~1 s pause, 5 minutes
    .venv/bin/python bench/load.py --scenario saturation   # (b) 50 users, no pause, 60 s
    .venv/bin/python bench/load.py --scenario overload     # (c) 200 users, no pause, 60 s
    .venv/bin/python bench/load.py --users 20 --duration 15 --think 0   # anything else

Uses its own database (finetune_loadbench; --db to change) on the development PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ROUTES = ("jobs", "job", "metrics", "datasets", "stats")
SCENARIOS = {
    "polling": {"users": 50, "duration": 300.0, "think": 1.0},
    "saturation": {"users": 50, "duration": 60.0, "think": 0.0},
    "overload": {"users": 200, "duration": 60.0, "think": 0.0},
}
BIG_JOB_POINTS = 1000


# --- the client (also used by tests/test_load_smoke.py) -------------------------------------------------------------
@dataclass
class LoadUser:
    """One simulated user: its API token, some of its job ids and its jobs with BIG_JOB_POINTS metric points (one
    running, the others finished: a chart opened on the live job or on past runs)."""

    token: str
    job_ids: list[int]
    big_job_ids: list[int]


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    bad_bodies: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.statuses.values())

    def count(self, predicate: Any) -> int:
        return sum(n for c in self.statuses.values() for s, n in c.items() if predicate(s))

    @property
    def server_errors(self) -> int:
        """5xx other than 503, and failed connections/timeouts."""
        return self.count(lambda s: not s.isdigit() or (s.startswith("5") and s != "503"))

    @property
    def shed(self) -> int:
        """Requests refused politely (503 busy / 429 throttled)."""
        return self.count(lambda s: s in ("503", "429"))


def route_url(route: str, user: LoadUser, i: int) -> str:
    if route == "jobs":
        return "/api/training/jobs/"
    if route == "job":
        return f"/api/training/jobs/{user.job_ids[i % len(user.job_ids)]}/"
    if route == "metrics":
        return f"/api/training/jobs/{user.big_job_ids[i // len(ROUTES) % len(user.big_job_ids)]}/metrics/?after_seq=0"
    if route == "datasets":
        return "/api/datasets/"
    if route == "presets":  # not in the default mix: a route with no query of its own (the floor of a request)
        return "/api/training/presets/"
    return "/api/dashboard/stats/"


async def _user_loop(
    base: str,
    user: LoadUser,
    deadline: float,
    think: float,
    results: Results,
    rng: random.Random,
    routes: tuple[str, ...] = ROUTES,
) -> None:
    import aiohttp

    headers = {"Authorization": f"Token {user.token}", "Accept": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    i = rng.randrange(len(routes))
    async with aiohttp.ClientSession(
        base, headers=headers, timeout=timeout, connector=aiohttp.TCPConnector(limit=1)
    ) as session:
        if think:
            await asyncio.sleep(rng.uniform(0, think))  # users do not all start in the same millisecond
        while time.monotonic() < deadline:
            route = routes[i % len(routes)]
            url = route_url(route, user, i)
            i += 1
            t0 = time.perf_counter()
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    status = str(response.status)
            except Exception as exc:  # connection refused/reset, timeout
                status, body = type(exc).__name__, b""
            elapsed = time.perf_counter() - t0
            results.statuses[route][status] += 1
            if status == "200":
                results.latencies[route].append(elapsed)
            elif status.isdigit() and len(results.bad_bodies) < 20:
                results.bad_bodies.append(f"{status} {url}: {body[:200]!r}")
            if think:
                await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))


async def run_load(
    base: str, users: list[LoadUser], *, duration: float, think: float, seed: int = 0, routes: tuple[str, ...] = ROUTES
) -> Results:
    """`len(users)` concurrent users for `duration` seconds against `base` (http://host:port)."""
    results = Results(started=time.monotonic())
    deadline = results.started + duration
    rng = random.Random(seed)
    await asyncio.gather(
        *(_user_loop(base, u, deadline, think, results, random.Random(rng.random()), routes) for u in users)
    )
    results.ended = time.monotonic()
    return results


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def report(results: Results) -> list[str]:
    lines = [f"{'route':<10} {'requests':>9} {'ok':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  other"]
    for route in sorted(results.statuses, key=lambda r: (ROUTES + (r,)).index(r)):
        lat = results.latencies.get(route, [])
        statuses = results.statuses.get(route, Counter())
        other = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()) if s != "200") or "-"
        lines.append(
            f"{route:<10} {sum(statuses.values()):>9} {len(lat):>7} {percentile(lat, 50) * 1000:>8.1f} "
            f"{percentile(lat, 95) * 1000:>8.1f} {percentile(lat, 99) * 1000:>8.1f} "
            f"{(max(lat) if lat else float('nan')) * 1000:>8.1f}  {other}"
        )
    seconds = max(1e-9, results.ended - results.started)
    lines.append(
        f"total {results.total} requests in {seconds:.1f} s = {results.total / seconds:.1f} requests/s; "
        f"errors (5xx other than 503, failed connections): {results.server_errors}; "
        f"shed (503/429): {results.shed}"
    )
    return lines


# --- the database ---------------------------------------------------------------------------------------------------
def token_for(i: int) -> str:
    return "ft_load" + hashlib.sha256(f"finetune-load-bench-{i}".encode()).hexdigest()[:32]


def ensure_database(name: str) -> None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        dbname="postgres",
        user=db["USER"],
        password=db["PASSWORD"],
        host=db["HOST"],
        port=db["PORT"] or None,
        autocommit=True,
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def seed(users: int, jobs: int, points: int) -> None:
    """Create the load users and their data unless a previous run did (idempotent; checked by counts)."""
    from django.db import connection, transaction

    from accounts.models import ApiToken, User, hash_token_key
    from datasets_app.models import Dataset, DatasetFile
    from models_app.models import BaseModel, FineTunedModel
    from training.models import MetricPoint, TrainingJob

    have_jobs = TrainingJob.objects.filter(owner__username__startswith="loaduser").count()
    have_points = MetricPoint.objects.filter(job__owner__username__startswith="loaduser").count() if have_jobs else 0
    active = TrainingJob.objects.filter(owner__username__startswith="loaduser", status__in=TrainingJob.ACTIVE).count()
    if have_jobs == jobs and have_points == points and active == 2 * users:
        print(f"seed: reusing {have_jobs} jobs and {have_points} metric points", flush=True)
        return
    t0 = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:  # a previous seed: rows that PROTECT go first, in SQL
        owners = "SELECT id FROM accounts_user WHERE username LIKE 'loaduser%%'"
        jobs_of = f"SELECT id FROM training_trainingjob WHERE owner_id IN ({owners})"
        cursor.execute(f"DELETE FROM training_metricpoint WHERE job_id IN ({jobs_of})")
        FineTunedModel.objects.filter(owner__username__startswith="loaduser").delete()
        TrainingJob.objects.filter(owner__username__startswith="loaduser").delete()
        Dataset.objects.filter(owner__username__startswith="loaduser").delete()
        User.objects.filter(username__startswith="loaduser").delete()
    base = BaseModel.objects.ensure_embedded()
    rng = random.Random(7)
    now = datetime.now(UTC)
    per_user = jobs // users
    big_per_user = max(1, per_user // 20)  # 5% of the jobs carry a long run of BIG_JOB_POINTS points
    small_jobs = jobs - big_per_user * users
    small_points_total = points - big_per_user * users * BIG_JOB_POINTS
    # Finished jobs of every outcome, and what the default quota allows at once: one running and one queued job.
    statuses = ["succeeded"] * 7 + ["failed", "cancelled"]
    with transaction.atomic():
        user_rows = User.objects.bulk_create(
            [
                User(username=f"loaduser{i:03d}", email=f"loaduser{i:03d}@example.com", password="!")
                for i in range(users)
            ]
        )
        ApiToken.objects.bulk_create(
            [
                ApiToken(user=u, name="load", prefix=token_for(i)[:10], key_hash=hash_token_key(token_for(i)))
                for i, u in enumerate(user_rows)
            ]
        )
        datasets = []
        for u in user_rows:
            for d in range(10):
                datasets.append(
                    Dataset(
                        owner=u,
                        name=f"dataset {d}",
                        status="ready",
                        format="alpaca",
                        row_count=1000,
                        size_bytes=123456,
                        verdict="ok",
                        original_filename=f"data{d}.jsonl",
                    )
                )
        datasets = Dataset.objects.bulk_create(datasets)
        DatasetFile.objects.bulk_create(
            [
                DatasetFile(
                    dataset=d, file=f"datasets/{d.owner_id}/seed/{d.pk}.jsonl", kind="jsonl", size_bytes=123456
                )
                for d in datasets
            ]
        )
        by_owner: dict[int, list[Dataset]] = defaultdict(list)
        for d in datasets:
            by_owner[d.owner_id].append(d)
        job_rows = []
        for u in user_rows:
            for j in range(per_user):
                status = ("running", "queued")[j] if j < 2 else statuses[j % len(statuses)]
                created = now - timedelta(minutes=rng.randrange(60 * 24 * 60))
                job_rows.append(
                    TrainingJob(
                        owner=u,
                        name=f"job {j}",
                        base_model=base,
                        dataset=by_owner[u.pk][j % 10],
                        method="sft",
                        weights="lora",
                        status=status,
                        hyperparameters={"learning_rate": 2e-4, "max_steps": 100},
                        current_step=100 if status == "succeeded" else 40,
                        total_steps=100,
                        progress=1.0 if status == "succeeded" else 0.4,
                        created=created,
                        started=created + timedelta(minutes=1),
                        finished=created + timedelta(minutes=30)
                        if status in ("succeeded", "failed", "cancelled")
                        else None,
                        compute_seconds=1800.0,
                        result={"metrics": {"train_loss_last": 1.2 + rng.random()}} if status == "succeeded" else None,
                    )
                )
        job_rows = TrainingJob.objects.bulk_create(job_rows)
        # bulk_create ignores auto_now_add's override? `created` has auto_now_add: set it afterwards in SQL.
        FineTunedModel.objects.bulk_create(
            [
                FineTunedModel(
                    owner_id=j.owner_id,
                    name=f"model {j.pk}",
                    base_model=base,
                    job=j,
                    method="sft",
                    weights="lora",
                    metrics={"train_loss_last": 1.3},
                )
                for j in job_rows
                if j.status == "succeeded" and j.pk % 5 == 0
            ]
        )
        big_ids = []
        jobs_by_owner: dict[int, list[TrainingJob]] = defaultdict(list)
        for j in job_rows:
            jobs_by_owner[j.owner_id].append(j)
        for owned in jobs_by_owner.values():
            big_ids += [j.pk for j in owned[:big_per_user]]
        big = set(big_ids)
        small_ids = [j.pk for j in job_rows if j.pk not in big]
        base_n, extra = divmod(small_points_total, max(1, small_jobs))
        counts = {pk: BIG_JOB_POINTS for pk in big_ids}
        for n, pk in enumerate(small_ids):
            counts[pk] = base_n + (1 if n < extra else 0)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE training_trainingjob SET created = started - interval '1 minute' "
                "WHERE owner_id IN (SELECT id FROM accounts_user WHERE username LIKE 'loaduser%%')"
            )
            raw = cursor.connection
            with raw.cursor().copy(
                "COPY training_metricpoint (job_id, seq, kind, step, epoch, loss, learning_rate, grad_norm, "
                "memory_mb, tokens_per_s, eta_s, time, extra) FROM STDIN"
            ) as copy:
                for pk, n in counts.items():
                    for seq in range(1, n + 1):
                        copy.write_row(
                            (
                                pk,
                                seq,
                                "metric",
                                seq,
                                seq / n,
                                2.0 / (1 + seq / 50),
                                2e-4,
                                1.0,
                                2048.0,
                                350.0,
                                float(n - seq),
                                now,
                                "{}",
                            )
                        )
            cursor.execute(
                "UPDATE training_trainingjob j SET metric_seq = c.n FROM "
                "(SELECT job_id, max(seq) AS n FROM training_metricpoint GROUP BY job_id) c "
                "WHERE c.job_id = j.id"
            )
            cursor.execute("ANALYZE")
    print(
        f"seed: {users} users, {len(job_rows)} jobs, {sum(counts.values())} metric points in "
        f"{time.monotonic() - t0:.0f} s",
        flush=True,
    )


def load_users() -> list[LoadUser]:
    from accounts.models import User
    from training.models import TrainingJob

    out = []
    for i, user in enumerate(User.objects.filter(username__startswith="loaduser").order_by("username")):
        ids = list(TrainingJob.objects.filter(owner=user).order_by("id").values_list("id", flat=True))
        big = list(
            TrainingJob.objects.filter(owner=user, metric_seq=BIG_JOB_POINTS)
            .order_by("id")
            .values_list("id", flat=True)
        )
        out.append(LoadUser(token=token_for(i), job_ids=ids[:50], big_job_ids=big or ids[:1]))
    return out


class ConnectionSampler(threading.Thread):
    """Samples how many PostgreSQL connections the benchmark database has, every half second."""

    def __init__(self, dbname: str) -> None:
        super().__init__(daemon=True)
        self.dbname, self.samples, self.stop_flag = dbname, [], threading.Event()

    def count(self) -> int:
        import psycopg
        from django.conf import settings

        db = settings.DATABASES["default"]
        with psycopg.connect(
            dbname="postgres",
            user=db["USER"],
            password=db["PASSWORD"],
            host=db["HOST"],
            port=db["PORT"] or None,
            application_name="loadbench-sampler",
        ) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name NOT LIKE 'loadbench%%'",
                [self.dbname],
            ).fetchone()
            return int(row[0]) if row else 0

    def run(self) -> None:
        while not self.stop_flag.wait(0.5):
            try:
                self.samples.append(self.count())
            except Exception:  # PostgreSQL full: that is a finding, not a crash
                self.samples.append(-1)


def wait_health(base: str, timeout: float) -> float | None:
    """Seconds until /api/health/ reports the database up (None if it never did within `timeout`)."""
    import urllib.request

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(f"{base}/api/health/", timeout=5) as r:
                if json.loads(r.read()).get("database"):
                    return time.monotonic() - t0
        except Exception:
            pass
        time.sleep(0.5)
    return None


def start_server(args: argparse.Namespace, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    sys.path.insert(0, str(ROOT))
    from tests.processes import free_port, wait_for_port

    port = free_port()
    if args.server_cmd:
        cmd = shlex.split(args.server_cmd.format(port=port, python=sys.executable))
    else:
        cmd = [sys.executable, "-m", "finetune.serve", "--host", "127.0.0.1", "--port", str(port)]
    log = open(ROOT / "var" / "log" / "loadbench-web.log", "ab")
    proc = subprocess.Popen(
        cmd, cwd=args.server_cwd or ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    wait_for_port(port, proc, timeout=120)
    return proc, f"http://127.0.0.1:{port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--users", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--think", type=float, help="mean pause between a user's requests, seconds (0: none)")
    parser.add_argument("--db", default="finetune_loadbench")
    parser.add_argument("--seed-users", type=int, default=50)
    parser.add_argument("--seed-jobs", type=int, default=10_000)
    parser.add_argument("--seed-points", type=int, default=1_000_000)
    parser.add_argument("--url", help="an already running web tier on --db (default: start one)")
    parser.add_argument("--server-cmd", help="start this instead of finetune.serve ({port}, {python} filled in)")
    parser.add_argument("--server-cwd", help="working directory of --server-cmd")
    parser.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated, of {', '.join(ROUTES)}, presets")
    parser.add_argument("--seed-only", action="store_true", help="create the data and stop")
    args = parser.parse_args()
    preset = SCENARIOS.get(args.scenario or "", SCENARIOS["saturation"])
    users_n = args.users or int(preset["users"])
    duration = args.duration or float(preset["duration"])
    think = preset["think"] if args.think is None else args.think

    os.environ["POSTGRES_DB"] = args.db
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finetune.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    (ROOT / "var" / "log").mkdir(parents=True, exist_ok=True)
    ensure_database(args.db)
    seed(args.seed_users, args.seed_jobs, args.seed_points)
    if args.seed_only:
        return 0
    pool_users = load_users()
    users = [pool_users[i % len(pool_users)] for i in range(users_n)]
    from django.db import connection

    connection.close()

    proc = None
    base = args.url
    if not base:
        proc, base = start_server(args, dict(os.environ))
    sampler = ConnectionSampler(args.db)
    try:
        if wait_health(base, 60) is None:
            print("the web tier never reported the database up", flush=True)
            return 1
        asyncio.run(run_load(base, users[:5], duration=3, think=0))  # warm-up: imports, pools
        print(
            f"load: {users_n} users for {duration:.0f} s, pause {think:g} s, against {base} "
            f"({'finetune.serve' if not (args.url or args.server_cmd) else args.url or args.server_cmd})",
            flush=True,
        )
        sampler.start()
        routes = tuple(r.strip() for r in args.routes.split(",") if r.strip())
        results = asyncio.run(run_load(base, users, duration=duration, think=think, routes=routes))
        stopped = time.monotonic()
        for line in report(results):
            print(line, flush=True)
        healthy = wait_health(base, 120)
        time.sleep(max(0.0, 5 - (time.monotonic() - stopped)))
        after = sampler.count()
        sampler.stop_flag.set()
        during = [s for s in sampler.samples if s >= 0]
        refused = sum(1 for s in sampler.samples if s < 0)
        print(
            f"postgres connections to {args.db}: max {max(during, default=0)} during the load"
            f"{f' ({refused} samples refused)' if refused else ''}, {after} five seconds after it",
            flush=True,
        )
        print(
            "health after the load: "
            + (f"green after {healthy:.1f} s" if healthy is not None else "NOT green within 120 s"),
            flush=True,
        )
        if results.bad_bodies:
            print("first non-200 answers:\n  " + "\n  ".join(results.bad_bodies[:5]), flush=True)
        return 0
    finally:
        sampler.stop_flag.set()
        if proc is not None:
            sys.path.insert(0, str(ROOT))
            from tests.processes import stop

            stop(proc)


if __name__ == "__main__":
    sys.exit(main())
