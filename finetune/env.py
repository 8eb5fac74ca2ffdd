"""Reading settings from the environment: strings (or a secret from the file named by ``NAME_FILE``), booleans,
integers and comma-separated lists. Used by ``finetune.settings``; imports nothing of Django's settings."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def _read_secret_file(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"cannot read secret file {path}: {exc}") from exc


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str | None:
    """A string from the environment (or from the file named by NAME_FILE)."""
    value = os.getenv(name)
    if value is None or value == "":
        value = _read_secret_file(os.getenv(f"{name}_FILE"))
    if value is None and required and not env_bool("DEBUG", True):
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is off")
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    """A boolean from the environment: 1/true/yes/on are true."""
    value = os.getenv(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """An integer from the environment."""
    value = os.getenv(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list from the environment."""
    value = env_str(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]
