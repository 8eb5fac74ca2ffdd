"""The checks behind the spec dataclasses: each raises ``ConfigError`` with a message naming the field and the value
(``learning_rate must be > 0 and < 1, got 3``), and unknown keys get a did-you-mean suggestion."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError


def suggest(name: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def check_keys(data: Mapping[str, Any], cls: type, what: str) -> None:
    """``data`` must be a mapping whose keys are fields of the dataclass ``cls``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be an object, got {type(data).__name__}.")
    known = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown {what} '{key}'{suggest(str(key), known)}.")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def check_int(
    name: str, value: Any, lo: int | None = None, hi: int | None = None, *, allow: tuple[int, ...] = ()
) -> None:
    """``value`` must be an integer within [lo, hi] (or one of ``allow``)."""
    if not is_int(value):
        raise ConfigError(f"{name} must be an integer, got {value!r}.")
    if value in allow:
        return
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            bounds = f">= {lo}"
        elif lo is None:
            bounds = f"<= {hi}"
        else:
            bounds = f"between {lo} and {hi}"
        extra = f" (or {' or '.join(map(str, allow))})" if allow else ""
        raise ConfigError(f"{name} must be {bounds}{extra}, got {value}.")


def check_float(
    name: str,
    value: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> None:
    if not is_number(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}.")
    parts = []
    ok = True
    if gt is not None:
        parts.append(f"> {gt:g}")
        ok &= value > gt
    if ge is not None:
        parts.append(f">= {ge:g}")
        ok &= value >= ge
    if lt is not None:
        parts.append(f"< {lt:g}")
        ok &= value < lt
    if le is not None:
        parts.append(f"<= {le:g}")
        ok &= value <= le
    if not ok:
        raise ConfigError(f"{name} must be {' and '.join(parts)}, got {value:g}.")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}.")


def coerce_float(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if is_int(value):
        object.__setattr__(obj, name, float(value))
