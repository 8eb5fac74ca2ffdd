"""The method registry: ``@register("sft")`` on a ``MethodTrainer`` subclass, ``get_trainer(method, ctx)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from training.engine.errors import ConfigError

from .context import RunContext

if TYPE_CHECKING:
    from .base import MethodTrainer

TRAINERS: dict[str, Callable[[RunContext], MethodTrainer]] = {}


def register(method: str) -> Callable[[type[MethodTrainer]], type[MethodTrainer]]:
    """Class decorator adding a method trainer to the registry."""

    def deco(cls: type[MethodTrainer]) -> type[MethodTrainer]:
        cls.method = method
        TRAINERS[method] = cls
        return cls

    return deco


def get_trainer(method: str, ctx: RunContext) -> MethodTrainer:
    """Instantiate the trainer registered for ``method``."""
    from . import dpo, kto, orpo, sft  # noqa: F401  (registration)

    try:
        factory = TRAINERS[method]
    except KeyError:
        raise ConfigError(f"Unknown method {method!r}; known: {', '.join(sorted(TRAINERS))}.") from None
    return factory(ctx)
