"""Checks a run makes before it writes anything: the model and its context length, QLoRA support, ``init_from``, the
data files, and whether the Unsloth fast path applies."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, DataError
from .spec import TrainingSpec

# Unsloth's CPU fallback measured slower than the default path on CPU, and it only supports SFT there; on CUDA it
# supports these combinations.
_UNSLOTH_SUPPORTED = {
    "cuda": {("sft", "lora"), ("sft", "qlora"), ("sft", "full")},
    "cpu": {("sft", "lora"), ("sft", "full")},
}
_UNSLOTH_AUTO_DEVICES = ("cuda",)


@dataclass(frozen=True)
class Checked:
    """What the preflight found: where the model is, its config, the device, the Unsloth choice, ``init_from``."""

    model_path: str
    config: Any
    device: Any  # DeviceInfo
    use_unsloth: bool
    init_path: str | None


def model_config(path: str) -> Any:
    """The transformers config of a model folder or Hub id (``ConfigError`` when it cannot be read)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read the model config of {path!r}: {exc}") from exc


def check_context_length(spec: TrainingSpec, config: Any) -> None:
    """``max_length`` must fit the model's context."""
    from .trainers.loading import model_max_positions

    limit = model_max_positions(config)
    if limit is not None and spec.hyper.max_length > limit:
        raise ConfigError(
            f"max_length={spec.hyper.max_length} is larger than the model's context: {spec.base_model} has "
            f"max_position_embeddings={limit}; use max_length <= {limit}."
        )


def select_unsloth(spec: TrainingSpec, device_type: str) -> bool:
    """Whether this run takes the Unsloth path (``auto``: installed, supported, and faster on this device)."""
    if spec.use_unsloth == "off":
        return False
    installed = importlib.util.find_spec("unsloth") is not None
    supported = (spec.method, spec.weights) in _UNSLOTH_SUPPORTED.get(device_type, set()) and not spec.init_from
    if spec.use_unsloth == "on":
        if not installed:
            raise ConfigError(
                "use_unsloth='on' but unsloth is not installed (pip install --no-deps unsloth unsloth_zoo); "
                "use 'auto' or 'off'."
            )
        if not supported:
            raise ConfigError(
                f"use_unsloth='on' does not support method={spec.method}, weights={spec.weights} on {device_type}"
                f"{' with init_from' if spec.init_from else ''}; use 'auto' or 'off'."
            )
        return True
    return installed and supported and device_type in _UNSLOTH_AUTO_DEVICES


def _init_path(spec: TrainingSpec) -> str | None:
    if not spec.init_from:
        return None
    path = os.path.abspath(spec.init_from)
    if not os.path.isdir(path):
        raise ConfigError(f"init_from {spec.init_from!r} is not a folder (a finished model or adapter).")
    return path


def preflight(spec: TrainingSpec) -> Checked:
    """Checks that need no writes: model, context length, QLoRA support, init_from, data files, Unsloth."""
    from .device import detect_device
    from .embedded import resolve_model_path

    device = detect_device(spec.hyper.precision)
    model_path = resolve_model_path(spec.base_model)
    if os.sep in spec.base_model and not os.path.isdir(model_path):
        raise ConfigError(f"base_model {spec.base_model!r} is not a model folder.")
    init_path = _init_path(spec)
    config = model_config(
        init_path if init_path and os.path.isfile(os.path.join(init_path, "config.json")) else model_path
    )
    check_context_length(spec, config)
    if spec.weights == "qlora":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("weights='qlora' needs bitsandbytes (pip install bitsandbytes); use 'lora' instead.")
        if device.type == "mps":
            raise ConfigError("weights='qlora' is not supported on Apple MPS; use 'lora'.")
    for path in (*spec.data.train_files, *spec.data.eval_files):
        if not os.path.isfile(path):
            raise DataError(f"Dataset file {path} does not exist.")
    return Checked(model_path, config, device, select_unsloth(spec, device.type), init_path)
