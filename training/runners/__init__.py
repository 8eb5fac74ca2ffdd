"""One module per backend; `get_runner(name)` selects it (like SESSION_ENGINE selects a session backend)."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType


def get_runner(backend: str) -> ModuleType:
    """The runner module for a backend name ('local', 'modal')."""
    if backend not in ("local", "modal"):
        raise ValueError(f"unknown training backend {backend!r}")
    return import_module(f"training.runners.{backend}")
