"""Method trainers (sft, dpo, orpo, kto), registered by method name; full/LoRA/QLoRA are options of each.

Modules: ``context`` (RunContext, DataReport, TrainOutcome), ``loading`` (model and tokenizer), ``memory_guard``
(gradient checkpointing and out-of-memory errors from ``training.engine.memory``), ``hf_trainer`` (the engine mixin
and shared TrainingArguments), ``base`` (MethodTrainer), ``preference`` (PreferenceTrainer), ``registry``.
"""

from __future__ import annotations

from .base import MethodTrainer
from .context import DataReport, RunContext, TrainOutcome
from .preference import PreferenceTrainer
from .registry import TRAINERS, get_trainer, register

__all__ = [
    "TRAINERS",
    "DataReport",
    "MethodTrainer",
    "PreferenceTrainer",
    "RunContext",
    "TrainOutcome",
    "get_trainer",
    "register",
]
