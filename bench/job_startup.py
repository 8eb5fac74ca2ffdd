"""Job start-up: queued -> first training step, and a 4-step job's wall time, through the real worker.

In one run, on the embedded SmolLM2 with a real Celery `training` worker process (started once, so its imports are
warm, as in production):
  1. a job whose base model evaluation is not cached yet (what every job paid before the cache): the baseline;
  2. the same job again with another learning rate (a sweep variant, a clone, a resumed attempt): the base model's
     evaluation comes from the host cache (training/engine/eval_cache.py).
Both for LoRA SFT (Alpaca rows) and DPO (HH-RLHF pairs), 4 steps each. For each job it prints the time from
creation to each phase the worker reports (claimed, loading the model, evaluating, training), to the first training
step's metric point and to success, and how much of the job was training. Target: queued -> first step <= 15 s.

    .venv/bin/python bench/job_startup.py [--methods sft,dpo] [--steps 4]

Uses the development database and Redis (like `make run`; the database is created and migrated if missing), a
throwaway user, and its own worker process.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finetune.settings")
SHARED = Path(os.environ.get("FINETUNE_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))
TARGET_S = 15.0

from bench.common import ensure_database, stored_dataset  # noqa: E402


def _rows(method: str) -> tuple[list[dict[str, Any]], str]:
    if method == "dpo":
        with gzip.open(SHARED / "hh_rlhf_harmless_test.jsonl.gz", "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for _, line in zip(range(400), fh, strict=False)]
        rows = sorted(rows, key=lambda r: len(r["chosen"]) + len(r["rejected"]))[:64]
        return rows, "hh_rlhf"
    rows = json.loads((SHARED / "alpaca_en_demo.json").read_text())[:64]
    return rows, "alpaca"


def _dataset(user: Any, method: str) -> Any:
    rows, fmt = _rows(method)
    return stored_dataset(user, rows, fmt=fmt, name=f"startup {fmt}")


def _watch(job: Any) -> dict[str, Any]:
    """Poll the job (every 50 ms) and note when each phase, the first metric point and the end were first seen."""
    from training.models import MetricPoint

    t0 = time.perf_counter()
    seen: dict[str, float] = {}
    while True:
        job.refresh_from_db(fields=["status", "phase", "error"])
        now = time.perf_counter() - t0
        phase = job.phase
        if phase == "evaluating" and "phase:training" in seen:
            phase = "evaluating_after"  # the fine-tuned model's evaluation, not the base model's
        for key in (f"status:{job.status}", f"phase:{phase}" if phase else ""):
            if key and key not in seen:
                seen[key] = now
        if "first_step" not in seen and MetricPoint.objects.filter(job_id=job.pk, kind="metric").exists():
            seen["first_step"] = now
        if job.status in ("succeeded", "failed", "cancelled"):
            seen["end"] = now
            return {"seen": seen, "status": job.status, "error": job.error}
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="sft,dpo")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    import django

    django.setup()
    ensure_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from models_app.models import BaseModel
    from tests.processes import start_celery_worker, stop
    from training import services
    from training.engine import eval_cache
    from training.engine.embedded import cache_dir
    from training.models import TrainingJob

    shutil.rmtree(cache_dir() / eval_cache.SUBDIR, ignore_errors=True)  # the first job of each method pays in full
    suffix = str(int(time.time()))
    user = User.objects.create_user(
        username=f"startup{suffix}", email=f"startup{suffix}@example.com", password="x-Strong-pass-1"
    )
    log = Path(tempfile.gettempdir()) / f"bench-startup-worker-{suffix}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", FINETUNE_EVAL_CACHE="1")
    proc, _node = start_celery_worker(env, log, queues="training")
    base = BaseModel.objects.ensure_embedded()
    results: list[dict[str, Any]] = []
    failed = False
    try:
        for method in args.methods.split(","):
            ds = _dataset(user, method)
            for label, lr in (("no cache (baseline)", 2e-4), ("cached base eval", 1e-4)):
                hyper = {
                    "max_steps": args.steps,
                    "per_device_train_batch_size": 2,
                    "max_length": 256,
                    "learning_rate": lr,
                    "logging_steps": 1,
                    "save_steps": 100,
                    "validation_split": 0.1,
                    "max_eval_samples": 8,
                    "seed": 42,
                }
                job = services.create_job(
                    owner=user,
                    name=f"startup {method} {label}",
                    base_model_id=base.pk,
                    dataset_id=ds.pk,
                    method=method,
                    weights="lora",
                    hyperparameters=hyper,
                )
                watched = _watch(job)
                job.refresh_from_db()
                train_s = ((job.result or {}).get("metrics") or {}).get("train_runtime_s")
                results.append({"method": method, "label": label, "train_s": train_s, **watched})
                failed |= watched["status"] != "succeeded"
                print(f"  {method} {label}: {watched['status']} {json.dumps(watched['seen'])}", flush=True)
    finally:
        stop(proc)
        TrainingJob.objects.filter(owner=user).delete()
        user.delete()

    print(f"\njob start-up, embedded SmolLM2-135M, LoRA, {args.steps} steps, load {os.getloadavg()[0]:.2f}")
    columns = [
        ("phase:loading_model", "load model"),
        ("phase:preparing_data", "prepare data"),
        ("phase:evaluating", "base eval"),
        ("phase:training", "training"),
        ("first_step", "first step"),
        ("end", "job wall"),
    ]
    print("seconds from job creation to each phase first seen ('-': the phase did not happen)")
    print(f"{'job':<28}" + "".join(f"{title:>13}" for _, title in columns) + f"{'train time':>13}")
    ok = True
    for r in results:
        seen = r["seen"]
        cells = "".join(f"{(f'{seen[key]:.1f}' if key in seen else '-'):>13}" for key, _ in columns)
        train = f"{r['train_s']:.1f}" if r["train_s"] else "-"
        print(f"{r['method'] + ' ' + r['label']:<28}{cells}{train:>13}")
        if r["label"].startswith("cached") and seen.get("first_step", 1e9) > TARGET_S:
            ok = False
    print(
        f"queued -> first step with the cached base evaluation: target <= {TARGET_S:.0f} s -> "
        f"{'MET' if ok and not failed else 'NOT MET'}"
    )
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
