"""Direct Preference Optimization with ``trl.DPOTrainer`` (LoRA: the reference model is the base with the adapter
disabled; full: TRL keeps a frozen copy).

On CPU with LoRA weights on a llama-family model (one process) the trainer is ``PackedDPOTrainer``
(``dpo_packed.py``): TRL's data pipeline, losses, metrics and logging, with the reference log-probs precomputed once
when the run trains on every pair (else with each step), padding-free rows under per-sequence attention and fused completion-only log-probs; bf16 autocast wherever
``common_args`` turned it on (a device with native bf16). Anything else runs on stock TRL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .dpo_packed import DpoPath, packed_dpo_trainer_class, precompute_pays, select_dpo_path, spec_loss_types
from .hf_trainer import EngineTrainerMixin
from .preference import PreferenceTrainer, preference_dataset
from .registry import register
from .sft import _supports, _use_packed_attention, supports_fused_loss

__all__ = ["DPOMethod", "preference_dataset"]


@register("dpo")
class DPOMethod(PreferenceTrainer):
    """DPO on preference pairs."""

    dpo_path: DpoPath | None = None

    def loss_types(self) -> list[str]:
        """The spec's loss type as TRL's list (sigmoid unless set)."""
        return spec_loss_types(self.ctx.spec.hyper)

    def path(self) -> DpoPath:
        """The packed CPU path or stock TRL, decided once the model is loaded."""
        if self.dpo_path is None:
            ctx = self.ctx
            self.dpo_path = select_dpo_path(
                device_type=ctx.device.type,
                weights=ctx.spec.weights,
                use_unsloth=ctx.use_unsloth,
                num_processes=ctx.spec.hyper.num_processes,
                supports_packed=supports_fused_loss(self.model) and _supports(self.model, "position_ids"),
                loss_types=self.loss_types(),
            )
        return self.dpo_path

    def precompute_reference(self) -> bool:
        """Whether the packed path computes the reference log-probs once up front (see ``precompute_pays``)."""
        h = self.ctx.spec.hyper
        return precompute_pays(
            max_steps=h.max_steps,
            rows_per_step=h.per_device_train_batch_size * h.gradient_accumulation_steps,
            train_rows=len(self.train_rows),
        )

    def config(self) -> Any:
        """The ``DPOConfig`` for this spec (reference log-probs precomputed on the packed path)."""
        from trl import DPOConfig

        h = self.ctx.spec.hyper
        extra: dict[str, Any] = {}
        if self.path().packed and self.precompute_reference():
            # No-grad packed rows are cheap in memory: a larger batch amortizes the per-call overhead.
            extra = {"precompute_ref_log_probs": True, "precompute_ref_batch_size": 2 * h.per_device_train_batch_size}
        return DPOConfig(
            **self.args(),
            beta=h.beta,
            loss_type=self.loss_types(),
            max_length=h.max_length,
            dataset_num_proc=None,
            **extra,
        )

    def trainer_class(self) -> type:
        """``DPOTrainer`` with the engine mixin (``PackedDPOTrainer`` on the packed path)."""
        from trl import DPOTrainer

        class EngineDPOTrainer(EngineTrainerMixin, DPOTrainer):
            pass

        if self.path().packed:
            return packed_dpo_trainer_class(EngineDPOTrainer)
        return EngineDPOTrainer

    def build(self, callbacks: Sequence[Any]) -> None:
        """Switch to the packed attention on the packed path, log the path, build the trainer (which precomputes
        the reference log-probs on the packed path) and log how long that took."""
        path = self.path()
        if path.packed:
            _use_packed_attention(self.model)
        self.ctx.emitter.log("info", f"DPO path: {path.describe()}")
        super().build(callbacks)
        if path.packed and self.trainer is not None:
            if self.precompute_reference():
                message = (
                    f"DPO reference log-probs precomputed: {self.trainer.precompute_pairs} pairs in "
                    f"{self.trainer.precompute_s:.1f} s"
                )
            else:
                h = self.ctx.spec.hyper
                rows = h.max_steps * h.per_device_train_batch_size * h.gradient_accumulation_steps
                message = (
                    f"DPO reference log-probs computed with each step (the run trains on {rows} of "
                    f"{len(self.train_rows)} pairs)"
                )
            self.ctx.emitter.log("info", message)
