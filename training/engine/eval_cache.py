"""The base model's evaluation ("before" training), cached on the host.

Every job evaluates the untouched base model on its held-out rows before it trains; on the embedded model that is
several seconds of a job's start-up, and a resumed attempt, a sweep's variants and a clone of a job all repeat the
very same computation. The result depends only on what goes into that forward pass, so it is cached under a key of
exactly those inputs:

- the base model's identity (its resolved folder and the name, size and modification time of every weight and
  config file in it), the method and how the weights are loaded (``weights``: QLoRA evaluates a 4-bit model);
- the held-out rows themselves (their canonical JSON, so a new dataset version or another split misses);
- every hyperparameter except those that only steer the optimisation (learning rate, epochs, schedule, saving,
  logging, early stopping, tracking), so a learning-rate sweep hits while a new ``max_length``, precision or DPO
  ``beta`` misses;
- the versions of torch, transformers, peft and trl (numerics can change between releases).

The cache lives under ``FINETUNE_CACHE_DIR/eval-before/`` (one small JSON file per key, written atomically). A file
that cannot be read is ignored and recomputed; ``FINETUNE_EVAL_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .embedded import cache_dir

logger = logging.getLogger(__name__)

SUBDIR = "eval-before"
# Hyperparameters that cannot change the base model's evaluation: they only steer training, saving and reporting.
TRAINING_ONLY = frozenset(
    {
        "num_train_epochs",
        "max_steps",
        "learning_rate",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "warmup_ratio",
        "weight_decay",
        "lr_scheduler_type",
        "logging_steps",
        "eval_steps",
        "save_steps",
        "save_total_limit",
        "max_grad_norm",
        "early_stopping_patience",
        "early_stopping_threshold",
        "load_best_model_at_end",
        "report_to",
        "seed",  # the held-out rows it picks are part of the key themselves
        "gradient_checkpointing",
    }
)
_MODEL_FILES = (".safetensors", ".bin", ".json", ".model", ".gguf", ".txt", ".jinja")


def enabled() -> bool:
    """False when ``FINETUNE_EVAL_CACHE`` is 0/false/off."""
    return os.environ.get("FINETUNE_EVAL_CACHE", "1").strip().lower() not in ("0", "false", "off", "no")


def _model_identity(model_path: str) -> Any:
    folder = Path(model_path)
    if not folder.is_dir():
        return str(model_path)  # a Hub id resolved later: its name is all we know
    files = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.endswith(_MODEL_FILES):
            st = p.stat()
            files.append([p.name, st.st_size, st.st_mtime_ns])
    return {"folder": str(folder.resolve()), "files": files}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "peft", "trl"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = ""
    return out


def cache_key(
    *,
    model_path: str,
    method: str,
    weights: str,
    hyperparameters: Mapping[str, Any],
    eval_examples: Sequence[Any],
    chat_template: str | None,
    precision: str,
) -> str:
    """SHA-256 of everything the base model's evaluation depends on (see the module docstring)."""
    material = {
        "model": _model_identity(model_path),
        "method": method,
        "weights": weights,
        "hyperparameters": {k: v for k, v in sorted(hyperparameters.items()) if k not in TRAINING_ONLY},
        "rows": list(eval_examples),
        "chat_template": chat_template,
        "precision": precision,
        "versions": _versions(),
    }
    blob = json.dumps(material, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def _path(key: str) -> Path:
    return cache_dir() / SUBDIR / f"{key}.json"


def load(key: str) -> dict[str, float] | None:
    """The cached metrics for ``key``, or None (missing, unreadable, or the cache is off)."""
    if not enabled():
        return None
    try:
        data = json.loads(_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or not metrics:
        return None
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def store(key: str, metrics: Mapping[str, Any]) -> None:
    """Write ``metrics`` under ``key`` atomically; a full disk or a read-only cache only costs the next job time."""
    if not enabled():
        return
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    path = _path(key)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"metrics": numeric}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("base model evaluation not cached: %s", exc)
        tmp.unlink(missing_ok=True)
