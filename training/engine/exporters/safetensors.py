"""Safetensors exporters: the LoRA adapter alone (``adapter``) and the full merged model (``merged``)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from training.engine.errors import ExportError

from .base import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    TOKENIZER_FILES,
    copy_tokenizer_files,
    is_adapter_dir,
    read_json,
    register,
)

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")
# Files of a full model folder that a plain copy carries over (weights, configs, tokenizer, chat template).
_MODEL_FILE_PATTERNS = ("*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json")


def _torch_dtype(name: str) -> Any:
    import torch

    if name not in DTYPES:
        raise ExportError(f"Unsupported dtype {name!r}; use one of {', '.join(DTYPES)}.")
    return getattr(torch, name)


def resolve_base(model_dir: str, base_model_path: str | None) -> str:
    """The base model folder for an adapter: the given path (embedded ids resolved) or the adapter's own record."""
    from training.engine.embedded import resolve_model_path

    base = base_model_path or str(read_json(Path(model_dir) / ADAPTER_CONFIG).get("base_model_name_or_path") or "")
    if not base:
        raise ExportError(f"No base model given for the adapter in {model_dir}.")
    return resolve_model_path(base)


def load_model(model_dir: str, base_model_path: str | None, *, dtype: str = "float32", merge: bool = True) -> Any:
    """Load a full model, or base + adapter (merged into plain weights when ``merge``), in eval mode."""
    from transformers import AutoModelForCausalLM

    torch_dtype = _torch_dtype(dtype)
    if not is_adapter_dir(model_dir):
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).eval()
    from peft import PeftModel

    base = resolve_base(model_dir, base_model_path)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    _resize_for_adapter_tokenizer(model, model_dir)
    peft_model = PeftModel.from_pretrained(model, model_dir)
    if merge:
        return peft_model.merge_and_unload().eval()
    return peft_model.eval()


def _resize_for_adapter_tokenizer(model: Any, adapter_dir: str) -> None:
    # A run that added tokens (e.g. a pad token) saved a bigger tokenizer next to the adapter; match it.
    if (
        not (Path(adapter_dir) / "tokenizer.json").exists()
        and not (Path(adapter_dir) / "tokenizer_config.json").exists()
    ):
        return
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        logger.info("resizing embeddings %d -> %d to match the adapter's tokenizer", rows, len(tokenizer))
        model.resize_token_embeddings(len(tokenizer))


def merge_to_folder(
    model_dir: str, base_model_path: str | None, dest: str, *, dtype: str | None = None
) -> dict[str, Any]:
    """Write a plain HF model folder (safetensors + configs + tokenizer + chat template) to ``dest``."""
    dest_path = Path(dest)
    dest_path.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    adapter = is_adapter_dir(model_dir)
    has_safetensors = any(Path(model_dir).glob("*.safetensors"))
    if not adapter and dtype is None and has_safetensors:
        for pattern in _MODEL_FILE_PATTERNS:
            for file in Path(model_dir).glob(pattern):
                shutil.copy2(file, dest_path / file.name)
        copy_tokenizer_files([model_dir], dest_path)
        info: dict[str, Any] = {"source": "full", "dtype": _config_dtype(dest_path), "copied": True}
    else:
        model = load_model(model_dir, base_model_path, dtype=dtype or "float32")
        model.save_pretrained(str(dest_path))
        sources: list[str | Path] = [model_dir]
        if adapter:
            sources.append(resolve_base(model_dir, base_model_path))
        if not copy_tokenizer_files(sources, dest_path):
            logger.warning("no tokenizer found next to %s or its base model", model_dir)
        info = {"source": "adapter" if adapter else "full", "dtype": dtype or "float32", "copied": False}
        if adapter:
            info["base_model"] = resolve_base(model_dir, base_model_path)
        del model
    info["seconds"] = round(time.perf_counter() - started, 2)
    return info


def _config_dtype(folder: Path) -> str:
    config = read_json(folder / "config.json") if (folder / "config.json").exists() else {}
    return str(config.get("dtype") or config.get("torch_dtype") or "unknown")


def _check_adapter(*, model_dir: str, **_: Any) -> None:
    if not is_adapter_dir(model_dir):
        raise ExportError(
            f"{model_dir} is not a PEFT adapter (no {ADAPTER_CONFIG}); a full fine-tune exports as 'merged' or GGUF."
        )
    if not (Path(model_dir) / ADAPTER_WEIGHTS).is_file():
        raise ExportError(f"{model_dir} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}.")


def _check_dtype(*, dtype: str | None = None, **_: Any) -> None:
    if dtype is not None and dtype not in DTYPES:
        raise ExportError(f"Unsupported dtype {dtype!r}; use one of {', '.join(DTYPES)}.")


@register("adapter", preflight=_check_adapter)
def export_adapter(
    *, model_dir: str, base_model_path: str, staging: str, base_model_name: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Copy the adapter weights, its config and the tokenizer/chat template; optionally rename the base model."""
    src, dest = Path(model_dir), Path(staging)
    shutil.copy2(src / ADAPTER_WEIGHTS, dest / ADAPTER_WEIGHTS)
    config = read_json(src / ADAPTER_CONFIG)
    if base_model_name:
        # The training machine's local path means nothing elsewhere; record the public id instead.
        config["base_model_name_or_path"] = base_model_name
    (dest / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sources: list[str | Path] = [src]
    if base_model_path:
        from training.engine.embedded import resolve_model_path

        sources.append(resolve_model_path(base_model_path))
    tokenizer_files = copy_tokenizer_files(sources, dest)
    metadata = {
        "base_model": config.get("base_model_name_or_path"),
        "peft_type": config.get("peft_type"),
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "target_modules": sorted(config["target_modules"])
        if isinstance(config.get("target_modules"), list)
        else config.get("target_modules"),
        "tokenizer_files": tokenizer_files,
    }
    return "", metadata


@register("merged", preflight=_check_dtype)
def export_merged(
    *, model_dir: str, base_model_path: str, staging: str, dtype: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Merge an adapter into its base (fp32 unless ``dtype``), or copy/re-save a full model, as safetensors."""
    info = merge_to_folder(model_dir, base_model_path, staging, dtype=dtype)
    info["tokenizer_files"] = sorted(name for name in TOKENIZER_FILES if (Path(staging) / name).exists())
    return "", info
