"""Before launch: tokens to process, duration, peak memory by method, whether it fits, and Modal cost per GPU.

Figures are estimates from the dataset's measured token lengths, the base model's size and measured throughputs;
memory and fit come from the engine's memory model (``training.engine.memory``), the same one the run uses to pick
gradient checkpointing, so the estimate and the run agree on whether a job fits. They say plainly when a
configuration will not fit.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings

from datasets_app.models import Dataset
from models_app.models import BaseModel
from training.engine import memory
from training.engine.data import wants_packing
from training.engine.trainers.memory_guard import packed_preference_expected

from . import pricing

# Measured on this project's 2-core CPU machine with the 135M embedded model (engine default path), in real
# tokens/s per method; scaled by parameter count for other models. GPU: A10G-relative figures for a 135M model.
CPU_TOKENS_PER_S_135M = {"lora": 230.0, "qlora": 150.0, "full": 170.0}
GPU_TOKENS_PER_S_135M_A10G = {"lora": 30000.0, "qlora": 18000.0, "full": 22000.0}
PREFERENCE_COST = 3.0  # DPO/ORPO: chosen + rejected (+ reference) forward passes per pair
MODAL_START_S = 90  # container start and model load


def _steps_and_tokens(rows: int, per_row: float, hyper: dict[str, Any]) -> tuple[int, int]:
    """(optimizer steps, tokens processed) of a run over ``rows`` rows of ``per_row`` tokens (the global batch:
    every process takes ``per_device_train_batch_size`` rows)."""
    batch = int(hyper["per_device_train_batch_size"]) * int(hyper["gradient_accumulation_steps"]) * processes(hyper)
    if int(hyper.get("max_steps", -1)) > 0:
        steps = int(hyper["max_steps"])
        samples = steps * batch
    else:
        samples = math.ceil(rows * float(hyper["num_train_epochs"]))
        steps = math.ceil(samples / max(1, batch))
    return steps, int(samples * per_row)


def processes(hyper: dict[str, Any]) -> int:
    """The GPUs (processes) a run uses: ``num_processes``, 1 when unset."""
    try:
        return max(int(hyper.get("num_processes") or 1), 1)
    except (TypeError, ValueError):
        return 1


def _memory(
    shape: memory.ModelShape, *, method: str, hyper: dict[str, Any], device_type: str, model_type: str | None = None
) -> dict[str, memory.MemoryEstimate]:
    """The memory model's step estimate for full / LoRA / QLoRA on a device type (``model_type``: the base model's
    ``config.model_type``, which decides whether a preference run takes the engine's packed path)."""
    precision = memory.default_precision(device_type, str(hyper.get("precision") or "auto"))
    return {
        weights: memory.estimate_memory(
            shape,
            method=method,
            weights=weights,
            batch_size=int(hyper["per_device_train_batch_size"]),
            max_length=int(hyper["max_length"]),
            precision=precision,
            device_type=device_type,
            chunked_logits=packed_preference_expected(
                method,
                weights=weights,
                device_type=device_type,
                num_processes=processes(hyper),
                model_type=model_type,
                loss_type=hyper.get("loss_type") or None,
            ),
        )
        for weights in memory.WEIGHTS
    }


def base_model_type(base_model: BaseModel) -> str | None:
    """The catalogue model's ``config.model_type``: the embedded model's converted config, else derived from its
    architecture (``LlamaForCausalLM`` -> ``llama``); None when unknown."""
    from training.engine.embedded import embedded_model_dir, is_embedded

    if is_embedded(base_model.repo_id):
        return str((memory.read_model_config(embedded_model_dir()) or {}).get("model_type") or "") or None
    arch = base_model.architecture or ""
    if not arch.endswith("ForCausalLM"):
        return None
    return arch.removesuffix("ForCausalLM").lower() or None


def _modal(
    shape: memory.ModelShape,
    *,
    method: str,
    weights: str,
    hyper: dict[str, Any],
    tokens: int,
    scale: float,
    pref: float,
) -> dict[str, dict[str, Any]]:
    """Duration, cost and fit on each Modal GPU (``num_processes`` of them)."""
    gpus = processes(hyper)
    on_gpu = _memory(shape, method=method, hyper=hyper, device_type="cuda")[weights]
    modal = {}
    for gpu in pricing.modal_gpus():
        tps = GPU_TOKENS_PER_S_135M_A10G[weights] * settings.MODAL_GPU_SPEED[gpu] * scale / pref
        secs = tokens / max(tps * gpus, 1e-9) + MODAL_START_S  # data parallel: ideal scaling over the GPUs
        modal[gpu] = {
            "duration_s": round(secs),
            "cost_usd": round(pricing.modal_cost_usd(gpu, secs) * gpus, 4),  # every GPU is paid for
            "fits": on_gpu.fits(settings.MODAL_GPU_MEMORY_GB[gpu] * 1024),
        }
    return modal


def _fit_notes(step: memory.MemoryEstimate, *, weights: str, available_gb: float) -> list[str]:
    """What the user should know about memory on the local device."""
    every = step.checkpointing_for(available_gb * 1024 - memory.RUNTIME_MB)
    if every is None:
        return [
            f"Will not fit: about {step.device_gb(1)} GB needed for {weights} even with gradient checkpointing, "
            f"this machine has {available_gb:.0f} GB. Try qlora, a smaller max_length or batch size, or a Modal "
            "GPU."
        ]
    if every:
        return [
            f"Fits with gradient checkpointing ({memory.checkpointing_label(every)}, about "
            f"{step.device_gb(every)} GB); training is slower."
        ]
    return []


def estimate(
    *,
    dataset: Dataset,
    base_model: BaseModel,
    method: str,
    weights: str,
    hyper: dict[str, Any],
    backend: str = "local",
) -> dict[str, Any]:
    """The numbers the wizard shows before launch."""
    report = dataset.report or {}
    rows = int(report.get("rows_valid") or dataset.row_count or 0)
    mean_tokens = float((report.get("tokens") or {}).get("mean") or 256)
    per_row = min(mean_tokens, int(hyper["max_length"]))
    total_tokens = int((report.get("tokens") or {}).get("total") or 0)
    if total_tokens and wants_packing(str(hyper.get("packing") or "auto"), report.get("format")):
        # Packed rows: full max_length blocks, so fewer, longer sequences (no token cut away).
        per_row = float(hyper["max_length"])
        rows = max(1, math.ceil(total_tokens / per_row))
    steps, tokens = _steps_and_tokens(rows, per_row, hyper)
    shape = memory.base_model_shape(base_model.repo_id, base_model.parameters or None)
    scale = 135_000_000 / max(shape.params, 1)
    pref = PREFERENCE_COST if method in memory.PREFERENCE_METHODS else 1.0
    cpu_tps = CPU_TOKENS_PER_S_135M[weights] * scale / pref
    configured = settings.TRAINING_DEVICE_MEMORY_GB
    local_gb = memory.local_memory_gb(configured)
    device_type = "cuda" if backend == "modal" else memory.local_device_type(configured)
    steps_memory = _memory(
        shape, method=method, hyper=hyper, device_type=device_type, model_type=base_model_type(base_model)
    )
    by_weights = {w: step.device_gb() for w, step in steps_memory.items()}
    fits_local = steps_memory[weights].fits(local_gb * 1024)
    modal = _modal(shape, method=method, weights=weights, hyper=hyper, tokens=tokens, scale=scale, pref=pref)
    # + model load and the before/after evaluation passes (capped eval set), measured on the same machine.
    overhead_s = 20 + 2 * min(rows * 0.1, 64) * per_row / max(cpu_tps * 3, 1e-9)
    gpus = processes(hyper)
    duration = tokens / max(cpu_tps * gpus, 1e-9) + overhead_s if backend == "local" else None
    notes = _fit_notes(steps_memory[weights], weights=weights, available_gb=local_gb) if backend == "local" else []
    return {
        "rows": rows,
        "steps": steps,
        "tokens": tokens,
        "num_processes": gpus,
        "mean_tokens_per_row": round(per_row, 1),
        "duration_s": round(duration) if duration is not None else modal.get("A10G", {}).get("duration_s"),
        "peak_memory_gb_by_method": by_weights,
        "peak_memory_gb": by_weights[weights],
        "fits": fits_local if backend == "local" else all(v["fits"] for v in modal.values()),
        "memory_available_gb": round(local_gb, 1),
        "modal_cost_usd_by_gpu": {g: v["cost_usd"] for g, v in modal.items()},
        "modal": modal,
        "notes": notes,
    }
