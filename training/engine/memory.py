"""The engine's one memory model of a training step.

The pre-launch estimate (``training.estimate``), the catalogue's fit check, the run's gradient-checkpointing choice
and its out-of-memory advice all use it, so they agree on whether a job fits. Pure Python: no torch, no Django; the
model's shape comes from its ``config.json`` (a dict) or a transformers config object, or from a parameter count.

A step needs its fixed memory (weights, gradients, optimizer state) plus its activations. Activations: ~11k values per
token and decoder layer for a llama block with LoRA on every linear (measured 1.3 MB per token on SmolLM2 in fp32),
times the allocator's fragmentation (x1.6 measured on CPU). Gradient checkpointing on every n-th layer keeps
``1 - 1/n`` of the activations; a run turns on the sparsest checkpointing whose step fits in ``BUDGET_FRACTION`` of
the free memory, so a job fits a device when at least checkpointing on every layer does.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUDGET_FRACTION = 0.8  # of the free memory a training step may plan to use
RUNTIME_MB = 400.0  # the Python/torch runtime (or the CUDA context): a device's total memory minus this is free
CHECKPOINT_CHOICES = (0, 3, 2, 1)  # off, then every 3rd / 2nd / every layer (~+11%, +16%, +33% step time)
# Two sequences per row (chosen + rejected; KTO: the completion + a KL completion), full logits (TRL).
PREFERENCE_METHODS = ("dpo", "orpo", "kto")
# The CPU paths' fused losses (``trainers/losses.py``, ``trainers/dpo_packed.py``) project onto the vocabulary one
# chunk of logits at a time; on the packed DPO path that chunk (fp32) and its compute-dtype copy replace TRL's full
# logits.
LOGITS_CHUNK_ELEMENTS = 8 * 2**20
# In fp32 the chunks are vocabulary-major and larger (``trainers/losses.py``): up to 512 positions of up to this many
# logits (100 MB), two such buffers when the packed DPO path also logs the entropy.
VOCAB_MAJOR_CHUNK_ELEMENTS = 512 * 49152
CHUNKED_LOGITS_BYTES = max(LOGITS_CHUNK_ELEMENTS * (4 + 2), VOCAB_MAJOR_CHUNK_ELEMENTS * 4 * 2)
WEIGHTS = ("full", "lora", "qlora")
OOM_ADVICE = (
    "lower per_device_train_batch_size (raise gradient_accumulation_steps to keep the effective batch), lower "
    "max_length, set gradient_checkpointing='on', or use weights='qlora' / a smaller model"
)

# The embedded default model (SmolLM2-135M-Instruct): the shape used when nothing better is known.
_DEFAULT_PARAMS = 135_000_000
_DEFAULT_HIDDEN = 576
_DEFAULT_LAYERS = 30
_DEFAULT_INTERMEDIATE = 1536
_DEFAULT_VOCAB = 49152


@dataclass(frozen=True)
class ModelShape:
    """What the memory model needs to know about a decoder-only model."""

    params: int
    hidden: int
    layers: int
    intermediate: int
    vocab: int

    def to_dict(self) -> dict[str, int]:
        """JSON-safe dict."""
        return {
            "params": self.params,
            "hidden": self.hidden,
            "layers": self.layers,
            "intermediate": self.intermediate,
            "vocab": self.vocab,
        }


def _text_config(config: Mapping[str, Any] | Any) -> Mapping[str, Any] | Any:
    """The text model's config (multimodal configs nest it under ``text_config``)."""
    if not isinstance(config, Mapping):
        return config.get_text_config() if hasattr(config, "get_text_config") else config
    inner = config.get("text_config")
    return {**config, **inner} if isinstance(inner, Mapping) else config


def _first_int(config: Mapping[str, Any] | Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def model_shape(config: Mapping[str, Any] | Any | None = None, *, params: int | None = None) -> ModelShape:
    """The shape of a model from its config (a ``config.json`` dict or a transformers config object).

    ``params`` (a known parameter count) wins over the count derived from the config. Without a config the shape is
    the embedded model's, its width scaled to ``params`` (hidden size ~ sqrt(parameters), as in the llama family).
    """
    if config is None:
        hidden = _DEFAULT_HIDDEN
        if params and params > 0:
            hidden = max(64, round(_DEFAULT_HIDDEN * math.sqrt(params / _DEFAULT_PARAMS)))
        intermediate = hidden * _DEFAULT_INTERMEDIATE // _DEFAULT_HIDDEN
        return ModelShape(int(params or _DEFAULT_PARAMS), hidden, _DEFAULT_LAYERS, intermediate, _DEFAULT_VOCAB)
    text = _text_config(config)
    hidden = _first_int(text, ("hidden_size", "n_embd", "d_model")) or 1024
    layers = _first_int(text, ("num_hidden_layers", "n_layer", "num_layers")) or 24
    intermediate = _first_int(text, ("intermediate_size", "n_inner", "ffn_dim")) or 4 * hidden
    vocab = _first_int(text, ("vocab_size",)) or 32000
    derived = layers * (4 * hidden * hidden + 3 * hidden * intermediate) + 2 * vocab * hidden
    return ModelShape(int(params or derived), hidden, layers, intermediate, vocab)


def read_model_config(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``folder/config.json`` as a dict, or None when it is missing or unreadable."""
    try:
        data = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def base_model_shape(base_model: str, parameters: int | None = None) -> ModelShape:
    """The shape of a catalogue model without loading it: the embedded model's converted config when that is the
    model (a web request never fetches a snapshot for an estimate), else a shape scaled to ``parameters``."""
    from .embedded import embedded_model_dir, is_embedded

    config = read_model_config(embedded_model_dir()) if is_embedded(base_model) else None
    return model_shape(config, params=parameters or None)


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one training step, in MB: ``fixed_mb`` (weights, gradients, optimizer state) and
    ``activations_mb`` (without gradient checkpointing)."""

    fixed_mb: float
    activations_mb: float

    def peak_mb(self, checkpoint_every: int = 0) -> float:
        """The step's peak with gradient checkpointing on every n-th layer (0 = off)."""
        if checkpoint_every <= 0:
            return self.fixed_mb + self.activations_mb
        return self.fixed_mb + self.activations_mb * (1 - 1 / checkpoint_every)

    def checkpointing_for(self, free_mb: float) -> int | None:
        """The sparsest gradient checkpointing (0 = off, n = every n-th layer) whose step fits in
        ``BUDGET_FRACTION`` of ``free_mb``; None when not even checkpointing every layer fits."""
        budget = BUDGET_FRACTION * free_mb
        for every in CHECKPOINT_CHOICES:
            if self.peak_mb(every) <= budget:
                return every
        return None

    def fits(self, device_mb: float) -> bool:
        """Whether a run fits a device with ``device_mb`` of memory in all (the runtime takes ``RUNTIME_MB``)."""
        return self.checkpointing_for(device_mb - RUNTIME_MB) is not None

    def device_gb(self, checkpoint_every: int = 0) -> float:
        """What the device needs, runtime included, in GB (two decimals)."""
        return round((self.peak_mb(checkpoint_every) + RUNTIME_MB) / 1024, 2)

    def describe(self) -> str:
        """One phrase for messages: the fixed part and the activations."""
        return (
            f"{self.fixed_mb / 1024:.1f} GB weights/optimizer + {self.activations_mb / 1024:.1f} GB activations "
            "without gradient checkpointing"
        )


def checkpointing_label(every: int) -> str:
    """``off``, ``every layer``, ``every 2nd layer``, ``every 3rd layer``, ... for messages."""
    if every <= 0:
        return "off"
    if every == 1:
        return "every layer"
    suffix = "th" if 10 <= every % 100 <= 20 else {2: "nd", 3: "rd"}.get(every % 10, "th")
    return f"every {every}{suffix} layer"


def estimate_memory(
    shape: ModelShape,
    *,
    method: str,
    weights: str,
    batch_size: int,
    max_length: int,
    precision: str = "bf16",
    device_type: str = "cuda",
    chunked_logits: bool = False,
) -> MemoryEstimate:
    """Rough peak memory of a training step of ``shape`` (see the module docstring for the model).
    ``chunked_logits``: a preference run on the packed DPO path, which never holds the full logits."""
    preference = method in PREFERENCE_METHODS
    tokens = batch_size * max_length * (2 if preference else 1)
    act_bytes = 2 if precision in ("bf16", "fp16") else 4
    fragmentation = 1.6 if device_type == "cpu" else 1.1
    activations = tokens * shape.layers * (10 * shape.hidden + 4 * shape.intermediate) * act_bytes * fragmentation
    if preference:
        # TRL computes full logits (fp32, and their gradient); the packed path one chunk at a time
        activations += CHUNKED_LOGITS_BYTES if chunked_logits else tokens * shape.vocab * 4 * 2
    weight_bytes = {"qlora": 0.6, "lora": 2 if act_bytes == 2 and device_type != "cpu" else 4, "full": 4}[weights]
    optimizer = shape.params * 12 if weights == "full" else 0  # fp32 gradients + Adam moments
    return MemoryEstimate((shape.params * weight_bytes + optimizer) / 2**20, activations / 2**20)


def estimates_by_weights(shape: ModelShape, **kwargs: Any) -> dict[str, MemoryEstimate]:
    """``estimate_memory`` for full, LoRA and QLoRA weights (same keyword arguments, without ``weights``)."""
    return {w: estimate_memory(shape, weights=w, **kwargs) for w in WEIGHTS}


def default_precision(device_type: str, precision: str = "auto") -> str:
    """The compute precision a run picks on a device type (``auto``: bf16 on GPUs and on CPUs with bf16 units)."""
    if precision != "auto":
        return precision
    if device_type == "cpu":
        from .device import cpu_bf16_native

        return "bf16" if cpu_bf16_native() else "fp32"
    return "bf16"


def local_device_type(configured_gb: float | None = None) -> str:
    """``cuda`` where the local training device's memory is configured (GPU hosts), else ``cpu``."""
    return "cuda" if configured_gb else "cpu"


def local_memory_gb(configured_gb: float | None = None) -> float:
    """Memory of the local training device: ``configured_gb`` (the deployment's setting for GPU hosts) when given,
    else this host's RAM."""
    if configured_gb:
        return float(configured_gb)
    from .device import total_ram_mb

    return float(total_ram_mb() or 0.0) / 1024


def oom_advice(estimate: MemoryEstimate | None = None, *, device_mb: float | None = None) -> str:
    """What to change after running out of memory, with the memory model's figures when they are known."""
    if estimate is None:
        return OOM_ADVICE
    text = f"{OOM_ADVICE} (estimated step: {estimate.describe()}"
    if device_mb and not estimate.fits(device_mb):
        text += f"; that does not fit {device_mb / 1024:.0f} GB even with gradient checkpointing on every layer"
    return text + ")"
