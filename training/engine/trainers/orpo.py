"""Odds Ratio Preference Optimization with ``trl.experimental.orpo.ORPOTrainer`` (no reference model: an SFT loss on
the chosen response plus ``beta`` x the log odds ratio of chosen over rejected).

On CPU with LoRA or full weights on a llama-family model (one process) the trainer is ``PackedORPOTrainer``
(``orpo_packed.py``): TRL's data pipeline, loss, metrics and logging, with padding-free rows under per-sequence
attention and fused log-probs of only the positions the loss uses; bf16 autocast wherever ``common_args`` turned it
on (a device with native bf16). Anything else runs on stock TRL.
"""

from __future__ import annotations

from typing import Any

from .dpo_packed import DpoPath
from .hf_trainer import EngineTrainerMixin
from .orpo_packed import packed_orpo_trainer_class, select_orpo_path
from .preference import PreferenceTrainer
from .registry import register


@register("orpo")
class ORPOMethod(PreferenceTrainer):
    """ORPO on preference pairs; its eval perplexity is that of the chosen responses (``eval_nll_loss``)."""

    perplexity_key = "eval_nll_loss"
    has_reference = False

    def select_path(self, inputs: dict[str, Any]) -> DpoPath:
        """The packed CPU path (``select_orpo_path``: LoRA or full weights, there is no reference model)."""
        return select_orpo_path(**inputs)

    def args(self) -> dict[str, Any]:
        """``common_args`` with ``remove_unused_columns=False`` (the ORPO trainer keeps every dataset column)."""
        return {**super().args(), "remove_unused_columns": False}

    def config(self) -> Any:
        """The ``ORPOConfig`` for this spec."""
        from trl.experimental.orpo import ORPOConfig

        h = self.ctx.spec.hyper
        return ORPOConfig(**self.args(), beta=h.beta, max_length=h.max_length, dataset_num_proc=None)

    def trainer_class(self) -> type:
        """``ORPOTrainer`` with the engine mixin (``PackedORPOTrainer`` on the packed path)."""
        from trl.experimental.orpo import ORPOTrainer

        class EngineORPOTrainer(EngineTrainerMixin, ORPOTrainer):
            pass

        if self.path().packed:
            return packed_orpo_trainer_class(EngineORPOTrainer)
        return EngineORPOTrainer
