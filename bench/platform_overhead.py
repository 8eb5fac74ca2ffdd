"""Platform overhead: the same LoRA training job through the platform vs the engine CLI alone.

In one run, on the embedded SmolLM2 and the shared Alpaca file:
  1. the platform: a job created through the service layer, claimed by a real Celery `training` worker process, with
     its lease heartbeat, every metric point written to PostgreSQL and pushed through the Redis channel layer;
  2. the engine CLI (`python -m training.engine.cli spec.json`) on the very spec the platform built for that job.
Each is run --repeat times, alternating. Prints the engine's own training-phase time and real tokens/s for both and
the end-to-end time (job created -> succeeded, vs the CLI process's wall time). Target: the platform <= 3% slower.

    .venv/bin/python bench/platform_overhead.py [--steps 20] [--repeat 2]

Uses the development database and Redis (like `make run`; the database is created and migrated if missing), a
throwaway user, and its own worker process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import ensure_database, stored_dataset  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finetune.settings")
# Public datasets (Alpaca etc.): FINETUNE_DATASETS_DIR, as the tests take them.
SHARED = Path(os.environ.get("FINETUNE_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))


def run_cli(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = {**spec, "output_dir": str(Path(tmp) / "run"), "job_id": "bench-cli"}
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "training.engine.cli", str(path)], cwd=ROOT, capture_output=True, text=True
        )
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the CLI failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "metrics": result["metrics"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import django

    django.setup()
    ensure_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from models_app.models import BaseModel
    from tests.processes import start_celery_worker, stop
    from training import services, workspace
    from training.models import TrainingJob

    suffix = str(int(time.time()))
    user = User.objects.create_user(
        username=f"bench{suffix}", email=f"bench{suffix}@example.com", password="x-Strong-pass-1"
    )
    rows = json.loads((SHARED / "alpaca_en_demo.json").read_text())[:200]
    ds = stored_dataset(user, rows, fmt="alpaca", name="bench alpaca")
    hyper = {
        "max_steps": args.steps,
        "per_device_train_batch_size": 4,
        "max_length": 256,
        "learning_rate": 2e-4,
        "logging_steps": 1,
        "save_steps": 10,
        "eval_steps": 10_000,
        "validation_split": 0.0,
        "seed": 42,
    }
    log = Path(tempfile.gettempdir()) / f"bench-overhead-worker-{suffix}.log"
    proc, node = start_celery_worker(dict(os.environ, PYTHONUNBUFFERED="1"), log, queues="training")
    base = BaseModel.objects.ensure_embedded()
    platform: list[dict[str, Any]] = []
    cli: list[dict[str, Any]] = []
    try:
        for i in range(args.repeat):
            t0 = time.perf_counter()
            job = services.create_job(
                owner=user,
                name=f"overhead {i}",
                base_model_id=base.pk,
                dataset_id=ds.pk,
                method="sft",
                weights="lora",
                hyperparameters=hyper,
            )
            while True:
                job.refresh_from_db()
                if job.status in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.2)
            wall = time.perf_counter() - t0
            if job.status != "succeeded":
                raise SystemExit(f"platform job {job.pk} ended {job.status}: {job.error}")
            metrics = (job.result or {}).get("metrics") or {}
            platform.append({"wall_s": wall, "metrics": metrics, "points": job.metric_points.count()})
            with workspace.prepare(job) as ws:  # the same spec the worker built (a fresh scratch folder)
                cli.append(run_cli(ws.spec.to_dict()))
            print(
                f"  round {i + 1}: platform {platform[-1]['metrics'].get('train_runtime_s')} s training, "
                f"{wall:.1f} s end to end; CLI {cli[-1]['metrics'].get('train_runtime_s')} s training, "
                f"{cli[-1]['wall_s']:.1f} s wall",
                flush=True,
            )
    finally:
        stop(proc)
        TrainingJob.objects.filter(owner=user).delete()
        user.delete()

    def med(items: list[dict[str, Any]], key: str) -> float:
        return statistics.median(float(x["metrics"][key]) for x in items)

    p_train, c_train = med(platform, "train_runtime_s"), med(cli, "train_runtime_s")
    p_tps, c_tps = med(platform, "tokens_per_s_mean"), med(cli, "tokens_per_s_mean")
    p_wall = statistics.median(x["wall_s"] for x in platform)
    c_wall = statistics.median(x["wall_s"] for x in cli)
    train_over = (p_train / c_train - 1) * 100
    wall_over = (p_wall / c_wall - 1) * 100
    print(
        f"platform overhead, LoRA SFT {args.steps} steps x {args.repeat} rounds (medians), load "
        f"{os.getloadavg()[0]:.2f}; {platform[0]['points']} metric points stored and pushed per platform run"
    )
    print(f"{'':<12} {'training s':>11} {'tokens/s':>9} {'end-to-end s':>13}")
    print(f"{'platform':<12} {p_train:>11.1f} {p_tps:>9.1f} {p_wall:>13.1f}")
    print(f"{'engine CLI':<12} {c_train:>11.1f} {c_tps:>9.1f} {c_wall:>13.1f}")
    ok = train_over <= 3.0
    print(
        f"training phase: platform {train_over:+.1f}% vs CLI (target <= +3%) -> {'MET' if ok else 'NOT MET'}; "
        f"end to end (queue, worker claim, model load, result bookkeeping): {wall_over:+.1f}%"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
