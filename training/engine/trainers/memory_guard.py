"""The run's side of the memory model (``training.engine.memory``): the step's estimate for this run, the gradient
checkpointing it picks, and out-of-memory errors translated into advice."""

from __future__ import annotations

import logging
import os
from typing import Any

from training.engine import memory
from training.engine.errors import OutOfMemory

from .context import RunContext

logger = logging.getLogger(__name__)


def step_memory(ctx: RunContext, config: Any) -> memory.MemoryEstimate:
    """The memory model's estimate of one training step of this run (model config, spec, device)."""
    h = ctx.spec.hyper
    return memory.estimate_memory(
        memory.model_shape(config),
        method=ctx.spec.method,
        weights=ctx.spec.weights,
        batch_size=h.per_device_train_batch_size,
        max_length=h.max_length,
        precision=ctx.device.precision,
        device_type=ctx.device.type,
        chunked_logits=_packed_preference_expected(ctx, config),
    )


def _packed_preference_expected(ctx: RunContext, config: Any) -> bool:
    """Whether this DPO, ORPO or KTO run will take its packed path, judged from the model's config before the model is
    loaded (the path itself is chosen on the loaded model)."""
    h = ctx.spec.hyper
    return packed_preference_expected(
        ctx.spec.method,
        weights=ctx.spec.weights,
        device_type=ctx.device.type,
        num_processes=h.num_processes,
        model_type=getattr(config, "model_type", None),
        loss_type=h.loss_type,
        use_unsloth=ctx.use_unsloth,
    )


def packed_preference_expected(
    method: str,
    *,
    weights: str,
    device_type: str,
    num_processes: int,
    model_type: str | None,
    loss_type: str | None = None,
    use_unsloth: bool = False,
) -> bool:
    """Whether a DPO, ORPO or KTO run takes its packed path (``dpo_packed.select_dpo_path``,
    ``orpo_packed.select_orpo_path``, ``kto_packed.select_kto_path``), which holds one chunk of logits instead of all
    of them: for the memory model, before the model is loaded (the run and the pre-launch estimate)."""
    from types import SimpleNamespace

    from .dpo_packed import select_dpo_path, spec_loss_types
    from .kto_packed import select_kto_path
    from .losses import FUSED_LOSS_MODEL_TYPES
    from .orpo_packed import select_orpo_path

    common: dict[str, Any] = {
        "device_type": device_type,
        "weights": weights,
        "use_unsloth": use_unsloth,
        "num_processes": num_processes,
        "supports_packed": model_type in FUSED_LOSS_MODEL_TYPES,
    }
    if method == "dpo":
        return select_dpo_path(**common, loss_types=spec_loss_types(SimpleNamespace(loss_type=loss_type))).packed
    if method == "orpo":
        return select_orpo_path(**common).packed
    if method == "kto":
        return select_kto_path(**common, loss_types=[loss_type or "kto"]).packed
    return False


def want_gradient_checkpointing(ctx: RunContext, estimate: memory.MemoryEstimate) -> int:
    """0 (off) or n (checkpoint every n-th decoder layer; 1 = all).

    ``on`` -> 1, ``off`` -> 0. ``auto``: all layers for QLoRA on CUDA; otherwise the sparsest choice whose estimated
    step fits the free memory (``MemoryEstimate.checkpointing_for``), all layers when none does.
    ``FINETUNE_GC_EVERY`` forces n (0 = off) for benchmarks.
    """
    from training.engine.device import available_memory_mb

    forced = os.environ.get("FINETUNE_GC_EVERY")
    if forced is not None and forced.strip():
        return max(0, int(forced))
    mode = ctx.spec.hyper.gradient_checkpointing
    if mode != "auto":
        return 1 if mode == "on" else 0
    if ctx.spec.weights == "qlora" and ctx.device.type == "cuda":
        return 1
    free = available_memory_mb(ctx.device.type)
    if free is None:
        return 0
    every = estimate.checkpointing_for(free)
    choice = 1 if every is None else every
    logger.info(
        "job %s: estimated %.0f MB weights/optimizer + %.0f MB activations, %.0f MB free: gradient checkpointing %s",
        ctx.job_id,
        estimate.fixed_mb,
        estimate.activations_mb,
        free,
        "off" if choice == 0 else f"every {choice} layer(s)",
    )
    return choice


def is_oom(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU out-of-memory errors."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text
    )


def oom_error(exc: BaseException, ctx: RunContext, estimate: memory.MemoryEstimate | None = None) -> OutOfMemory:
    """An ``OutOfMemory`` with the settings that caused it, what to change and the memory model's estimate."""
    h = ctx.spec.hyper
    advice = memory.oom_advice(estimate, device_mb=ctx.device.total_memory_mb)
    return OutOfMemory(
        f"Out of memory on {ctx.device.type} ({ctx.device.name}) with per_device_train_batch_size="
        f"{h.per_device_train_batch_size}, max_length={h.max_length}, weights={ctx.spec.weights}: {advice}. "
        f"({type(exc).__name__}: {str(exc)[:200]})"
    )
