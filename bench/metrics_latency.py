"""Engine callback -> websocket client latency, at 20 metric points/s for 60 s.

Measures, in one run, the platform's path (DjangoReporter.on_event -> PostgreSQL row with a sequence number ->
Redis channel layer through one long-lived sender loop -> daphne -> a websockets client) against a naive baseline
that does the same work but pushes each message with its own `async_to_sync(group_send)` call. Prints p50/p95/p99/max
latency and gaps for both; target: p99 <= 50 ms and no gaps.

    .venv/bin/python bench/metrics_latency.py [--rate 20] [--seconds 60]

Uses the development database and Redis (like `make run`), with its own daphne on a free port and a throwaway user.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finetune.settings")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    import django

    django.setup()
    import websockets
    from django.core.management import call_command
    from django.test import Client

    from accounts.models import User
    from datasets_app.models import Dataset
    from models_app.models import BaseModel
    from tests.processes import start_daphne, stop
    from training import events, services
    from training.models import TrainingJob
    from training.reporting import DjangoReporter

    call_command("migrate", verbosity=0)
    suffix = str(int(time.time()))
    user = User.objects.create_user(
        username=f"bench{suffix}", email=f"bench{suffix}@example.com", password="x-Strong-pass-1"
    )
    ds = Dataset.objects.create(owner=user, name="bench", status="ready", format="alpaca")
    job = TrainingJob.objects.create(
        owner=user,
        name="latency",
        base_model=BaseModel.objects.ensure_embedded(),
        dataset=ds,
        method="sft",
        weights="lora",
        hyperparameters={},
        status="running",
        lease_owner="bench",
    )
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = Path("/tmp") / f"bench-daphne-{suffix}.log"
    proc, port = start_daphne(env, log)
    url = f"ws://127.0.0.1:{port}/ws/training/{job.pk}/"
    n = int(args.rate * args.seconds)
    results: dict[str, dict[str, float]] = {}
    try:
        for mode in ("platform", "baseline"):
            sent: dict[int, float] = {}
            received: dict[int, float] = {}
            first_seq = TrainingJob.objects.get(pk=job.pk).metric_seq + 1

            async def listen(ready: threading.Event, done: threading.Event) -> None:
                async with websockets.connect(
                    url, additional_headers={"Cookie": cookie}, origin=f"http://127.0.0.1:{port}"
                ) as ws:
                    ready.set()
                    while len(received) < n:
                        try:
                            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        except TimeoutError:
                            break
                        if msg.get("type") == "metric":
                            received[msg["seq"]] = time.perf_counter()
                done.set()

            ready, done = threading.Event(), threading.Event()
            listener = threading.Thread(target=lambda: asyncio.run(listen(ready, done)), daemon=True)
            listener.start()
            ready.wait(10)
            time.sleep(0.5)
            reporter = DjangoReporter(job.pk, "bench")
            if mode == "baseline":
                from asgiref.sync import async_to_sync
                from channels.layers import get_channel_layer

                def naive_send(job_id: int, payload: dict, wait: bool = False) -> None:
                    async_to_sync(get_channel_layer().group_send)(
                        events.job_group(job_id), {"type": "job.event", "payload": payload}
                    )

                original = events._send_now
                events._send_now = naive_send  # type: ignore[assignment]
            interval = 1.0 / args.rate
            start = time.perf_counter()
            for i in range(n):
                target = start + i * interval
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent[first_seq + i] = time.perf_counter()
                reporter.on_event(
                    {
                        "type": "metric",
                        "step": i + 1,
                        "total_steps": n,
                        "epoch": 0.0,
                        "loss": 1.0,
                        "learning_rate": 1e-4,
                        "grad_norm": 1.0,
                        "memory_mb": 100.0,
                        "tokens_per_s": 100.0,
                        "eta_s": 1.0,
                    }
                )
            done.wait(15)
            if mode == "baseline":
                events._send_now = original  # type: ignore[assignment]
            lat = [(received[s] - sent[s]) * 1000 for s in sent if s in received]
            gaps = len(sent) - len(lat)
            results[mode] = {
                "points": len(sent),
                "received": len(lat),
                "gaps": gaps,
                "p50": percentile(lat, 50),
                "p95": percentile(lat, 95),
                "p99": percentile(lat, 99),
                "max": max(lat),
                "mean": statistics.mean(lat),
            }
    finally:
        stop(proc)
        TrainingJob.objects.filter(pk=job.pk).delete()
        ds.delete()
        user.delete()
        services  # noqa: B018 (imported for the reporter's services)

    print(f"metrics latency at {args.rate:g} points/s for {args.seconds:g} s (engine callback -> websocket client)")
    print(
        f"{'path':<10} {'points':>7} {'recv':>6} {'gaps':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for mode, r in results.items():
        print(
            f"{mode:<10} {r['points']:>7} {r['received']:>6} {r['gaps']:>5} {r['p50']:>8.1f} {r['p95']:>8.1f} "
            f"{r['p99']:>8.1f} {r['max']:>8.1f}"
        )
    ours = results["platform"]
    ok = ours["p99"] <= 50 and ours["gaps"] == 0
    print(
        f"target p99 <= 50 ms, no gaps: {'MET' if ok else 'NOT MET'} "
        f"(p99 {ours['p99']:.1f} ms vs baseline {results['baseline']['p99']:.1f} ms)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
