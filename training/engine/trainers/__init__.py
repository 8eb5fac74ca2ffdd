"""Method trainers (sft, dpo, orpo), registered by method name; full/LoRA/QLoRA are options of each."""

from __future__ import annotations

from .base import TRAINERS, DataReport, MethodTrainer, RunContext, get_trainer, register

__all__ = ["TRAINERS", "DataReport", "MethodTrainer", "RunContext", "get_trainer", "register"]
