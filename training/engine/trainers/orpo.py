"""Odds Ratio Preference Optimization with ``trl.experimental.orpo.ORPOTrainer`` (no reference model: an SFT loss on
the chosen response plus ``beta`` x the log odds ratio of chosen over rejected)."""

from __future__ import annotations

from typing import Any

from .hf_trainer import EngineTrainerMixin
from .preference import PreferenceTrainer
from .registry import register


@register("orpo")
class ORPOMethod(PreferenceTrainer):
    """ORPO on preference pairs; its eval perplexity is that of the chosen responses (``eval_nll_loss``)."""

    perplexity_key = "eval_nll_loss"

    def args(self) -> dict[str, Any]:
        """``common_args`` with ``remove_unused_columns=False`` (the ORPO trainer keeps every dataset column)."""
        return {**super().args(), "remove_unused_columns": False}

    def config(self) -> Any:
        """The ``ORPOConfig`` for this spec."""
        from trl.experimental.orpo import ORPOConfig

        h = self.ctx.spec.hyper
        return ORPOConfig(**self.args(), beta=h.beta, max_length=h.max_length, dataset_num_proc=None)

    def trainer_class(self) -> type:
        """``ORPOTrainer`` with the engine mixin."""
        from trl.experimental.orpo import ORPOTrainer

        class EngineORPOTrainer(EngineTrainerMixin, ORPOTrainer):
            pass

        return EngineORPOTrainer
