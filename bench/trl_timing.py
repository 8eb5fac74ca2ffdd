"""What the training benchmarks share to time a TRL trainer like our engine times itself: per optimizer step, the wall
time, the real (non-padding) tokens it trained and its loss, plus the process's peak RSS and, on CUDA, peak memory."""

from __future__ import annotations

import resource
import time
from typing import Any


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

    def counting(model: Any, inputs: Any, *a: Any, **kw: Any) -> Any:
        mask = inputs.get("attention_mask")
        counted["tokens"] += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
        return step(model, inputs, *a, **kw)

    trainer.training_step = counting
    return timer
