"""Direct Preference Optimization with ``trl.DPOTrainer`` (LoRA: the reference model is the base with the adapter
disabled; full: the model before training when the reference is precomputed, else a frozen copy TRL keeps).

On CPU with LoRA or full weights on a llama-family model (one process) the trainer is ``PackedDPOTrainer``
(``dpo_packed.py``): TRL's data pipeline, losses, metrics and logging, with the reference log-probs precomputed once
when the run trains on every pair (else with each step, on the same packed forward), padding-free rows under
per-sequence attention and fused completion-only log-probs; bf16 autocast wherever ``common_args`` turned it on (a
device with native bf16). Anything else runs on stock TRL.
"""

from __future__ import annotations

from typing import Any

from .dpo_packed import DpoPath, packed_dpo_trainer_class, select_dpo_path, spec_loss_types
from .hf_trainer import EngineTrainerMixin
from .preference import PreferenceTrainer, preference_dataset
from .registry import register

__all__ = ["DPOMethod", "preference_dataset"]


@register("dpo")
class DPOMethod(PreferenceTrainer):
    """DPO on preference pairs."""

    def loss_types(self) -> list[str]:
        """The spec's loss type as TRL's list (sigmoid unless set)."""
        return spec_loss_types(self.ctx.spec.hyper)

    def select_path(self, inputs: dict[str, Any]) -> DpoPath:
        """The packed CPU path for LoRA or full weights with a loss TRL computes from per-token log-probs
        (``select_dpo_path``)."""
        return select_dpo_path(**inputs, loss_types=self.loss_types())

    def config(self) -> Any:
        """The ``DPOConfig`` for this spec (reference log-probs precomputed on the packed path when that pays)."""
        from trl import DPOConfig

        h = self.ctx.spec.hyper
        return DPOConfig(
            **self.args(),
            beta=h.beta,
            loss_type=self.loss_types(),
            max_length=h.max_length,
            dataset_num_proc=None,
            **self.reference_args(),
        )

    def trainer_class(self) -> type:
        """``DPOTrainer`` with the engine mixin (``PackedDPOTrainer`` on the packed path)."""
        from trl import DPOTrainer

        class EngineDPOTrainer(EngineTrainerMixin, DPOTrainer):
            pass

        if self.path().packed:
            return packed_dpo_trainer_class(EngineDPOTrainer)
        return EngineDPOTrainer
