"""How the processes of a distributed run hold the model (``hyper.sharding``): whole copies (DDP) or shards (FSDP2
through accelerate, or DeepSpeed ZeRO stage 3), as ``TrainingArguments`` values. No process group code here: the
Trainer's accelerator sets up DDP, FSDP or DeepSpeed from these arguments and torchrun's environment.

- ``ddp``: every rank holds the whole model; gradients are averaged. Right for LoRA/QLoRA (only the adapter trains).
- ``fsdp``: FSDP2 ``fully_shard`` on every decoder layer (the model's ``_no_split_modules``); parameters, gradients
  and AdamW state are split across the ranks, so a full fine-tune needs about 1/N of the memory per GPU.
  Checkpoints and the final model are gathered to full weights (``FULL_STATE_DICT``) and written by rank 0, so they
  load anywhere (one GPU, the exports) and resume on any number of ranks.
- ``zero3``: DeepSpeed ZeRO stage 3 with the same effect; the 16-bit weights are gathered for saving.
- ``auto``: ``fsdp`` for full fine-tuning on CUDA, ``ddp`` otherwise.

Accelerate shards only GPU ranks (on CPU it sets up DDP whatever FSDP settings it gets), so an explicit ``fsdp`` or
``zero3`` on a CPU run is refused with a plain message instead of silently training unsharded.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from training.engine.errors import ConfigError

Strategy = Literal["single", "ddp", "fsdp", "zero3"]


def deepspeed_available() -> bool:
    """True when ``deepspeed`` is importable (it is not in the CPU stack; install it on GPU workers to use ZeRO-3)."""
    return importlib.util.find_spec("deepspeed") is not None


def resolve_sharding(
    *, sharding: str, processes: int, weights: str, device_type: str, check_installed: bool = True
) -> Strategy:
    """The strategy a run uses (``single`` for one process), or a ``ConfigError`` naming what is missing.
    ``check_installed=False`` leaves out what only the worker's own environment can tell (DeepSpeed installed): the
    platform checks a job at creation with it."""
    if processes <= 1:
        return "single"
    if sharding == "auto":
        return "fsdp" if weights == "full" and device_type == "cuda" else "ddp"
    if sharding in ("fsdp", "zero3") and device_type != "cuda":
        raise ConfigError(
            f"sharding '{sharding}' needs CUDA GPUs (accelerate shards only GPU processes); this run is on "
            f"{device_type}: use sharding 'ddp' or 'auto'."
        )
    if sharding == "zero3" and check_installed and not deepspeed_available():
        raise ConfigError(
            "sharding 'zero3' needs DeepSpeed on the worker (`pip install deepspeed`); use sharding 'fsdp' for the "
            "same memory savings with PyTorch's FSDP2."
        )
    if sharding == "fsdp" and weights == "qlora":
        raise ConfigError(
            "sharding 'fsdp' with QLoRA is not supported (4-bit weights are not sharded by FSDP2 here); use "
            "sharding 'ddp' (each GPU holds the 4-bit model) or weights 'lora'."
        )
    return sharding  # type: ignore[return-value]


def sharding_args(strategy: Strategy) -> dict[str, Any]:
    """``TrainingArguments`` values for a strategy (none for ``single`` and ``ddp``)."""
    if strategy == "fsdp":
        return {
            "fsdp": True,
            "fsdp_config": {
                "version": 2,
                "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # the model's _no_split_modules (its decoder layers)
                "reshard_after_forward": True,
                "state_dict_type": "FULL_STATE_DICT",
                "cpu_ram_efficient_loading": False,
            },
        }
    if strategy == "zero3":
        return {
            "deepspeed": {
                "zero_optimization": {
                    "stage": 3,
                    "overlap_comm": True,
                    "contiguous_gradients": True,
                    "stage3_gather_16bit_weights_on_model_save": True,
                },
                "bf16": {"enabled": "auto"},
                "fp16": {"enabled": "auto"},
                "zero_allow_untested_optimizer": True,  # the Trainer's torch AdamW, as every other path uses
                "train_micro_batch_size_per_gpu": "auto",
                "train_batch_size": "auto",
                "gradient_accumulation_steps": "auto",
                "gradient_clipping": "auto",
            }
        }
    return {}


def is_sharded(trainer: Any) -> bool:
    """True when the trainer's model is split across the ranks (FSDP or DeepSpeed): saving is then a collective
    every rank joins."""
    return bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))
