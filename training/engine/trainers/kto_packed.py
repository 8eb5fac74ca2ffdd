"""KTO on CPU without padding or full logits (``PackedKTOTrainer``).

Stock ``trl.KTOTrainer`` (1.16) runs four padded forwards per step: the policy on the step's rows, the policy on the
KL rows (each prompt with another row's completion, no gradient) and the reference (the base with the adapter
disabled) on both, and on devices without Triton its fused LM head projects every position onto the vocabulary.
This path keeps TRL's data pipeline, losses (``kto``, ``apo_zero_unpaired``), metrics and logging, and changes only
how the per-token log-probs are computed, as packed DPO does (``dpo_packed.py``):

- every forward is one padding-free row under the per-sequence attention, and only the completion positions are
  projected onto the vocabulary (``packed_token_logprobs``);
- the reference log-probs of the rows and of the KL rows come from TRL's precompute machinery, once before training
  when the run trains on every row (``precompute_pays``), else with each step (one no-grad packed forward of the
  step's rows, handed to TRL's loss as if precomputed), so the policy's forwards are the only ones left in a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .dpo_packed import DpoPath, PackedCausalLM, TimedPrecompute, reference_path_refusal

# TRL 1.16's KTO losses, both computed from the completions' summed log-probs (and the KL estimate).
PACKED_LOSS_TYPES = frozenset({"kto", "apo_zero_unpaired"})


def select_kto_path(*, loss_types: Sequence[str], **inputs: Any) -> DpoPath:
    """The packed path on CPU for LoRA weights on a model with a plain linear head and packed-attention support, one
    process and a loss TRL computes from log-probs (``reference_path_refusal``); stock TRL otherwise (with the
    reason)."""
    refusal = reference_path_refusal(loss_types=loss_types, supported=PACKED_LOSS_TYPES, **inputs)
    reason = refusal if refusal is not None else f"loss {'+'.join(loss_types)}"
    return DpoPath(refusal is None, reason, stock="stock TRL KTOTrainer")


def packed_kto_trainer_class(base: type) -> type:
    """``base`` (a ``trl.KTOTrainer`` subclass, e.g. with the engine mixin) whose policy and reference log-probs come
    from the packed forward; ``precompute_s`` is the time an up-front reference pass took."""

    class PackedKTOTrainer(TimedPrecompute, base):  # type: ignore[misc, valid-type]
        """``KTOTrainer`` on padding-free rows with fused completion-only log-probs (see ``kto_packed``)."""

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            policy = PackedCausalLM(model, self.accelerator.autocast, stats=True)
            if self.precompute_ref_logps:
                return super()._compute_loss(policy, inputs, return_outputs)
            # The reference with each step: TRL's own per-batch reference pass (adapter disabled, no grad) on the
            # packed forward, handed to its loss as precomputed values (its in-step path calls the model unpacked).
            ref_logps, ref_kl_logps = self.compute_ref_log_probs(self.model, inputs)
            inputs = {**inputs, "ref_logps": ref_logps}
            if self.calculate_KL:
                inputs["ref_KL_logps"] = ref_kl_logps
            self.precompute_ref_logps = True
            try:
                return super()._compute_loss(policy, inputs, return_outputs)
            finally:
                self.precompute_ref_logps = False

        def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
            # TRL disables the adapter (or selects the "ref" adapter) and enters no_grad + autocast around the calls
            return super().compute_ref_log_probs(PackedCausalLM(model, self.accelerator.autocast, stats=False), inputs)

    return PackedKTOTrainer
