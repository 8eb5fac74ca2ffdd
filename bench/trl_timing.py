"""What the training benchmarks share: timing a TRL trainer like our engine times itself (per optimizer step the wall
time, the real (non-padding) tokens it trained and its loss; the process's peak RSS and, on CUDA, peak memory), the
matmul roofline, running each side in its own process and summarizing its steps."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_gflops(dtype_name: str, n: int = 2048, seconds: float = 3.0) -> float:
    """The measured matmul roofline of this machine in ``dtype_name`` (torch's threads as set now), GFLOP/s."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def attach_step_timer(trainer: Any) -> Any:
    """Time ``trainer`` (a Hugging Face / TRL Trainer) step by step; the timer, whose ``steps`` list holds one
    ``{"step", "busy_s", "tokens", "loss"}`` per optimizer step once ``trainer.train()`` returned, and whose
    ``cuda_peak_mb`` is the CUDA peak during training (0 on CPU). Real tokens are counted from each micro-batch's
    attention mask (all ids for padding-free rows) as the Trainer hands it to ``training_step``."""
    import torch
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()
    counted = {"tokens": 0}

    class StepTimer(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.steps: list[dict[str, Any]] = []
            self.cuda_peak_mb = 0.0
            self._t = 0.0
            self._tokens = 0

        def on_train_begin(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            if cuda:
                torch.cuda.reset_peak_memory_stats()

        def on_step_begin(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            self._t = time.perf_counter()
            self._tokens = counted["tokens"]

        def on_step_end(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
                self.cuda_peak_mb = max(self.cuda_peak_mb, torch.cuda.max_memory_allocated() / 2**20)
            self.steps.append(
                {
                    "step": state.global_step,
                    "busy_s": time.perf_counter() - self._t,
                    "tokens": counted["tokens"] - self._tokens,
                    "loss": None,
                }
            )

        def on_log(self, a: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs and self.steps:
                self.steps[-1]["loss"] = float(logs["loss"])

    timer = StepTimer()
    trainer.add_callback(timer)
    step = trainer.training_step

    from training.engine.trainers.hf_trainer import count_real_tokens

    def counting(model: Any, inputs: Any, *a: Any, **kw: Any) -> Any:
        counted["tokens"] += count_real_tokens(inputs)[0]  # as the engine counts its own (DPO/ORPO layouts too)
        return step(model, inputs, *a, **kw)

    trainer.training_step = counting
    return timer


def run_worker(
    script: str, name: str, argv: list[str], *, env: dict[str, str] | None = None, timeout: float | None = None
) -> dict[str, Any]:
    """Run ``script --worker name *argv`` in its own process (so its peak memory is its own); the JSON of its
    ``RESULT `` line, or exit with the worker's output when it failed."""
    base = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, script, "--worker", name, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**base, **(env or {})}, cwd=ROOT, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise SystemExit(f"{name} worker failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Real tokens/s over the timed steps (the first, a warm-up, excluded), the loss curve and peak memory of a
    worker's result."""
    timed = [s for s in raw["steps"] if s["step"] > 1]
    tokens = sum(s["tokens"] for s in timed)
    busy = sum(s["busy_s"] for s in timed)
    return {
        "tokens": tokens,
        "busy_s": busy,
        "tokens_per_s": tokens / busy if busy else 0.0,
        "losses": [s["loss"] for s in raw["steps"]],
        "peak_rss_mb": raw.get("peak_rss_mb"),
    }
