"""Exporters: adapter, merged safetensors and verified GGUF artifacts, plus the model card.

``export_artifact(name, model_dir=..., base_model_path=..., out_dir=...)`` looks ``name`` up in a registry
(``list_exporters()``) and writes ``out_dir/<name>/`` atomically. Heavy libraries are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Artifact, export_artifact, is_adapter_dir, list_exporters
from .model_card import write_model_card

if TYPE_CHECKING:
    from .gguf import SUPPORTED_QUANTIZATIONS
    from .verify import Tolerance, VerificationReport, verify_gguf

__all__ = [
    "SUPPORTED_QUANTIZATIONS",
    "Artifact",
    "Tolerance",
    "VerificationReport",
    "export_artifact",
    "is_adapter_dir",
    "list_exporters",
    "verify_gguf",
    "write_model_card",
]

_LAZY = {
    "verify_gguf": "verify",
    "VerificationReport": "verify",
    "Tolerance": "verify",
    "SUPPORTED_QUANTIZATIONS": "gguf",
}


def __getattr__(name: str) -> Any:
    # Loaded on first use so ``import training.engine.exporters`` stays cheap.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
