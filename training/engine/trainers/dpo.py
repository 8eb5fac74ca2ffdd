"""Direct Preference Optimization with ``trl.DPOTrainer`` (LoRA: the reference model is the base with the adapter
disabled; full: TRL keeps a frozen copy)."""

from __future__ import annotations

from typing import Any

from .hf_trainer import EngineTrainerMixin
from .preference import PreferenceTrainer, preference_dataset
from .registry import register

__all__ = ["DPOMethod", "preference_dataset"]


@register("dpo")
class DPOMethod(PreferenceTrainer):
    """DPO on preference pairs."""

    def config(self) -> Any:
        """The ``DPOConfig`` for this spec."""
        from trl import DPOConfig

        h = self.ctx.spec.hyper
        loss = [h.loss_type] if h.loss_type else ["sigmoid"]
        return DPOConfig(**self.args(), beta=h.beta, loss_type=loss, max_length=h.max_length, dataset_num_proc=None)

    def trainer_class(self) -> type:
        """``DPOTrainer`` with the engine mixin."""
        from trl import DPOTrainer

        class EngineDPOTrainer(EngineTrainerMixin, DPOTrainer):
            pass

        return EngineDPOTrainer
