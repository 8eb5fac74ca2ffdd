"""Before launch: tokens to process, duration, peak memory by method, whether it fits, and Modal cost per GPU.

Figures are estimates from the dataset's measured token lengths, the base model's size and measured throughputs;
they say plainly when a configuration will not fit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from django.conf import settings

from datasets_app.models import Dataset
from models_app.models import BaseModel

# Measured on this project's 2-core CPU machine with the 135M embedded model (engine default path), in real
# tokens/s per method; scaled by parameter count for other models. GPU: A10G-relative figures for a 135M model.
CPU_TOKENS_PER_S_135M = {"lora": 230.0, "qlora": 150.0, "full": 170.0}
GPU_TOKENS_PER_S_135M_A10G = {"lora": 30000.0, "qlora": 18000.0, "full": 22000.0}
PREFERENCE_COST = 3.0  # DPO/ORPO: chosen + rejected (+ reference) forward passes per pair


def _model_shape(base: BaseModel) -> dict[str, int]:
    params = int(base.parameters or 135_000_000)
    shape = {"params": params, "hidden": 576, "layers": 30}
    path = ""  # a web request never fetches a snapshot for an estimate: only the embedded model's config is at hand
    if base.source == BaseModel.Source.EMBEDDED:
        from training.engine.embedded import cache_dir

        path = str(cache_dir() / "models" / "SmolLM2-135M-Instruct")
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
        shape["hidden"] = int(cfg.get("hidden_size", shape["hidden"]))
        shape["layers"] = int(cfg.get("num_hidden_layers", shape["layers"]))
    except (OSError, ValueError, TypeError):
        pass
    return shape


def peak_memory_gb(shape: dict[str, int], *, weights: str, batch: int, max_length: int) -> float:
    """Weights + gradients + optimizer state + activations, in GB."""
    p = shape["params"]
    if weights == "full":
        static = p * (2 + 4 + 8)  # bf16 weights, fp32 grads, Adam moments
    elif weights == "lora":
        static = p * 2 + p * 0.02 * (4 + 4 + 8)
    else:  # qlora
        static = p * 0.55 + p * 0.02 * (4 + 4 + 8)
    activations = batch * max_length * shape["hidden"] * shape["layers"] * 34 / 2  # bf16, no checkpointing
    return round((static + activations) * 1.15 / 1024**3 + 0.4, 2)  # + allocator slack and runtime


def estimate(*, dataset: Dataset, base_model: BaseModel, method: str, weights: str, hyper: dict[str, Any],
             backend: str = "local") -> dict[str, Any]:
    """The numbers the wizard shows before launch."""
    report = dataset.report or {}
    rows = int(report.get("rows_valid") or dataset.row_count or 0)
    mean_tokens = float((report.get("tokens") or {}).get("mean") or 256)
    max_length = int(hyper["max_length"])
    per_row = min(mean_tokens, max_length)
    batch = int(hyper["per_device_train_batch_size"]) * int(hyper["gradient_accumulation_steps"])
    if int(hyper.get("max_steps", -1)) > 0:
        steps = int(hyper["max_steps"])
        samples = steps * batch
    else:
        samples = math.ceil(rows * float(hyper["num_train_epochs"]))
        steps = math.ceil(samples / max(1, batch))
    tokens = int(samples * per_row)
    shape = _model_shape(base_model)
    scale = 135_000_000 / max(shape["params"], 1)
    pref = PREFERENCE_COST if method in ("dpo", "orpo") else 1.0
    cpu_tps = CPU_TOKENS_PER_S_135M[weights] * scale / pref
    memory = {w: peak_memory_gb(shape, weights=w, batch=int(hyper["per_device_train_batch_size"]),
                                max_length=max_length) for w in ("full", "lora", "qlora")}
    if method in ("dpo", "orpo"):
        memory = {k: round(v * 1.6, 2) for k, v in memory.items()}
    local_limit_gb = _local_memory_gb()
    fits_local = memory[weights] <= local_limit_gb
    modal = {}
    for gpu, price in settings.MODAL_GPU_PRICES_USD_PER_HOUR.items():
        tps = GPU_TOKENS_PER_S_135M_A10G[weights] * settings.MODAL_GPU_SPEED[gpu] * scale / pref
        secs = tokens / max(tps, 1e-9) + 90  # + container start and model load
        modal[gpu] = {"duration_s": round(secs), "cost_usd": round(secs / 3600 * price, 4),
                      "fits": memory[weights] <= settings.MODAL_GPU_MEMORY_GB[gpu]}
    # + model load and the before/after evaluation passes (capped eval set), measured on the same machine.
    overhead_s = 20 + 2 * min(rows * 0.1, 64) * per_row / max(cpu_tps * 3, 1e-9)
    duration = tokens / max(cpu_tps, 1e-9) + overhead_s if backend == "local" else None
    notes = []
    if backend == "local" and not fits_local:
        notes.append(f"Will not fit: about {memory[weights]} GB needed for {weights}, this machine has "
                     f"{local_limit_gb:.0f} GB. Try qlora, a smaller max_length or batch size, or a Modal GPU.")
    return {
        "rows": rows, "steps": steps, "tokens": tokens, "mean_tokens_per_row": round(per_row, 1),
        "duration_s": round(duration) if duration is not None else modal.get("A10G", {}).get("duration_s"),
        "peak_memory_gb_by_method": memory, "peak_memory_gb": memory[weights],
        "fits": fits_local if backend == "local" else all(v["fits"] for v in modal.values()),
        "memory_available_gb": round(local_limit_gb, 1),
        "modal_cost_usd_by_gpu": {g: v["cost_usd"] for g, v in modal.items()},
        "modal": modal, "notes": notes,
    }


def _local_memory_gb() -> float:
    """Memory of the local training device: TRAINING_DEVICE_MEMORY_GB (set it on GPU hosts), else this host's RAM."""
    if settings.TRAINING_DEVICE_MEMORY_GB:
        return float(settings.TRAINING_DEVICE_MEMORY_GB)
    import psutil

    return float(psutil.virtual_memory().total / 1024**3)
