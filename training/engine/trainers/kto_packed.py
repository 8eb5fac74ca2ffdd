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
  step's rows, handed to TRL's loss as if precomputed: ``StepReference``);
- a row and its KL row (the same prompt, another row's completion) go through the reference in one packed forward,
  paired as DPO pairs its chosen and rejected sequences: the prompt is computed once (``RowAndKLReference``);
- the policy's no-grad pass over the KL rows skips TRL's logging statistics (entropy, mean logit, top-1), which
  TRL takes from the rows' pass only (``KTOPolicy``).

The policy's rows and KL rows stay two forwards: packed together, the KL rows' tokens would join the backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import dpo_packed
from .dpo_packed import DpoPath, PackedCausalLM, StepReference, TimedPrecompute, reference_path_refusal

# TRL 1.16's KTO losses, both computed from the completions' summed log-probs (and the KL estimate).
PACKED_LOSS_TYPES = frozenset({"kto", "apo_zero_unpaired"})


def select_kto_path(*, loss_types: Sequence[str], **inputs: Any) -> DpoPath:
    """The packed path on CPU for LoRA or full weights on a model with a plain linear head and packed-attention
    support, one process and a loss TRL computes from log-probs (``reference_path_refusal``); stock TRL otherwise
    (with the reason)."""
    refusal = reference_path_refusal(loss_types=loss_types, supported=PACKED_LOSS_TYPES, **inputs)
    reason = refusal if refusal is not None else f"loss {'+'.join(loss_types)}"
    return DpoPath(refusal is None, reason, stock="stock TRL KTOTrainer")


def _kl_labels(inputs: dict[str, Any]) -> Any:
    """The KL rows' labels as TRL's reference pass makes them: the KL completion's tokens, -100 elsewhere."""
    return inputs["KL_input_ids"].masked_fill(inputs["KL_completion_mask"] == 0, -100)


def row_and_kl_logprobs(
    model: Any, inputs: dict[str, Any], labels: Any, *, autocast: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-token log-probs of a KTO batch's rows (``input_ids``, ``attention_mask``, ``labels``) and of its KL rows
    in one packed forward: the two ``[B, T]`` batches are stacked (right-padded to one width) as ``[2B, W]``, so
    ``packed_token_logprobs`` pairs row ``i`` with KL row ``i`` and computes their shared prompt once. Returns each
    batch's ``packed_token_logprobs`` fields in its own ``[B, T-1]`` layout."""
    import torch

    ids, kl_ids = inputs["input_ids"], inputs["KL_input_ids"]
    rows, width = ids.shape[0], max(ids.shape[1], kl_ids.shape[1])

    def widen(t: Any, fill: int) -> Any:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill)

    mask, kl_mask = inputs.get("attention_mask"), inputs.get("KL_attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask
    kl_mask = torch.ones_like(kl_ids) if kl_mask is None else kl_mask
    out = dpo_packed.packed_token_logprobs(
        model,
        torch.cat([widen(ids, 0), widen(kl_ids, 0)]),
        torch.cat([widen(mask, 0), widen(kl_mask, 0)]),
        torch.cat([widen(labels, -100), widen(_kl_labels(inputs), -100)]),
        stats=False,
        autocast=autocast,
    )
    cut = {"log_probs", "label_mask"}
    first = {k: (v[:rows, : ids.shape[1] - 1] if k in cut else v) for k, v in out.items()}
    second = {k: (v[rows:, : kl_ids.shape[1] - 1] if k in cut else v) for k, v in out.items()}
    return first, second


class RowAndKLReference(PackedCausalLM):
    """The model as TRL's ``compute_ref_log_probs`` calls it for one batch: its call on the batch's rows computes the
    KL rows too, in the same packed forward (``row_and_kl_logprobs``), and its call on the KL rows (with the labels
    TRL makes for them) answers from that; any other call is ``PackedCausalLM``'s."""

    def __init__(self, model: Any, autocast: Any, inputs: dict[str, Any]) -> None:
        super().__init__(model, autocast, stats=False)
        self.inputs = inputs
        self.kl: dict[str, Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        inputs, ids, labels = self.inputs, kwargs.get("input_ids"), kwargs.get("labels")
        if self.answers(args, kwargs) and "KL_input_ids" in inputs:
            if ids is inputs["input_ids"] and kwargs.get("attention_mask") is inputs.get("attention_mask"):
                first, self.kl = row_and_kl_logprobs(self.model, inputs, labels, autocast=self.autocast)
                return self.output(first)
            kl, self.kl = self.kl, None
            if kl is not None and ids is inputs["KL_input_ids"] and torch.equal(labels, _kl_labels(inputs)):
                return self.output(kl)
        return super().__call__(*args, **kwargs)


class KTOPolicy(PackedCausalLM):
    """The policy as TRL's ``_compute_loss`` calls it: with TRL's logging statistics (entropy, mean logit, top-1) on
    the rows, without them on the KL rows, whose log-probs are all TRL uses."""

    def __init__(self, model: Any, autocast: Any, kl_input_ids: Any) -> None:
        super().__init__(model, autocast, stats=True)
        self.kl_input_ids = kl_input_ids

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.stats = self.kl_input_ids is None or kwargs.get("input_ids") is not self.kl_input_ids
        return super().__call__(*args, **kwargs)


def packed_kto_trainer_class(base: type) -> type:
    """``base`` (a ``trl.KTOTrainer`` subclass, e.g. with the engine mixin) whose policy and reference log-probs come
    from the packed forward; ``precompute_s`` is the time an up-front reference pass took."""

    class PackedKTOTrainer(StepReference, TimedPrecompute, base):  # type: ignore[misc, valid-type]
        """``KTOTrainer`` on padding-free rows with fused completion-only log-probs (see ``kto_packed``)."""

        reference_keys = ("ref_logps", "ref_KL_logps")

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            policy = KTOPolicy(model, self.accelerator.autocast, inputs.get("KL_input_ids"))
            return super()._compute_loss(policy, inputs, return_outputs)

        def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
            # TRL disables the adapter (or selects the "ref" adapter) and enters no_grad + autocast around the calls;
            # the rows and the KL rows share one packed forward
            if self.calculate_KL:
                model = RowAndKLReference(model, self.accelerator.autocast, inputs)
            else:
                model = PackedCausalLM(model, self.accelerator.autocast, stats=False)
            return super().compute_ref_log_probs(model, inputs)

    return PackedKTOTrainer
