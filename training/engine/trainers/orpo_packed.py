"""ORPO on CPU without padding or full logits (``PackedORPOTrainer``).

Stock ``trl.experimental.orpo.ORPOTrainer`` (1.16) pads the chosen and rejected sequences of a micro-batch to the
longest one, runs the model over the padded ``[2B, T]`` batch and keeps the full ``[2B, T, vocab]`` logits: a
cross-entropy over every chosen token (the NLL term, prompt included), a log-softmax over every position for the
completions' mean log-probs, and the logits' mean for logging. On a CPU the padding, the vocabulary projection of
positions whose log-prob is never used and the memory of the full logits are real time.

This path keeps TRL's tokenization, collator, odds-ratio loss, metrics and logging, and replaces only
``concatenated_forward``: the 2B sequences are packed padding-free into one row under the per-sequence attention of
``packed_attention.py`` (the same forward as packed DPO, ``dpo_packed.packed_token_logprobs``), and only the
positions a term uses are projected, chunk by chunk: every real token of the chosen sequences (their NLL, whose
completion part is also the chosen mean log-prob) and the completion tokens of the rejected ones. No reference model
is involved, so full weights take this path as well as LoRA.

One logging figure differs from stock: ``logits/chosen`` and ``logits/rejected`` are the mean logit over the
projected positions, where stock TRL averages over every padded position of the batch (padding included).
"""

from __future__ import annotations

from typing import Any

from .dpo_packed import DpoPath, packed_refusal, packed_token_logprobs


def select_orpo_path(
    *, device_type: str, weights: str, use_unsloth: bool, num_processes: int, supports_packed: bool
) -> DpoPath:
    """The packed path on CPU for LoRA or full weights on a model with a plain linear head and packed-attention
    support, one process; stock TRL otherwise (with the reason)."""
    refusal = packed_refusal(
        device_type=device_type, use_unsloth=use_unsloth, num_processes=num_processes, supports_packed=supports_packed
    )
    if refusal is None and weights not in ("lora", "full"):
        refusal = f"{weights} weights"
    return DpoPath(refusal is None, refusal or f"{weights} weights", stock="stock TRL ORPOTrainer")


def packed_orpo_forward(
    model: Any, batch: dict[str, Any], *, padding_value: int, autocast: Any, device: Any = None
) -> tuple[Any, Any, Any, Any, Any]:
    """What ``ORPOTrainer.concatenated_forward`` returns, from one padding-free forward:
    ``(chosen mean log-prob, rejected mean log-prob, chosen logits stand-in, rejected logits stand-in, chosen NLL)``.

    The mean log-probs are per sequence over its completion tokens; the NLL is the mean cross-entropy over every
    real chosen token after the first (prompt and completion, as stock ORPO); the logits stand-ins are the per-token
    mean logits of the projected positions (only their ``mean()`` is used, for logging)."""
    from trl.experimental.orpo import ORPOTrainer

    concatenated = ORPOTrainer.concatenated_inputs(batch, padding_value=padding_value, device=device)
    input_ids = concatenated["concatenated_input_ids"]
    attention_mask = concatenated["concatenated_attention_mask"]
    completion_labels = concatenated["concatenated_labels"]
    pairs = batch["chosen_labels"].shape[0]
    # chosen rows: every real token is a target (the NLL term); rejected rows: only their completion
    labels = completion_labels.clone()
    labels[:pairs] = input_ids[:pairs].masked_fill(attention_mask[:pairs] == 0, -100)
    out = packed_token_logprobs(model, input_ids, attention_mask, labels, stats=True, autocast=autocast)
    logp, label_mask = out["log_probs"], out["label_mask"]

    chosen_mask = label_mask[:pairs]
    chosen_nll = -logp[:pairs].sum() / chosen_mask.sum().clamp(min=1)
    completion = (completion_labels[:, 1:] != -100) & label_mask
    mean_logps = (logp * completion).sum(-1) / completion.sum(-1).clamp(min=1)
    logits = out["mean_logits"]
    chosen_logits = logits[:pairs][chosen_mask]
    rejected_logits = logits[pairs:][label_mask[pairs:]]
    return mean_logps[:pairs], mean_logps[pairs:], chosen_logits, rejected_logits, chosen_nll


def packed_orpo_trainer_class(base: type) -> type:
    """``base`` (an ``ORPOTrainer`` subclass, e.g. with the engine mixin) whose forward is the packed one."""

    class PackedORPOTrainer(base):  # type: ignore[misc, valid-type]
        """``ORPOTrainer`` on padding-free rows with fused log-probs of the used positions (see ``orpo_packed``)."""

        def concatenated_forward(self, model: Any, batch: dict[str, Any]) -> tuple[Any, ...]:
            if self.is_encoder_decoder or self.aux_loss_enabled:  # not chosen for such models; stock as a guard
                return super().concatenated_forward(model, batch)
            return packed_orpo_forward(
                model,
                batch,
                padding_value=self.padding_value,
                autocast=self.accelerator.autocast,
                device=self.accelerator.device,
            )

    return PackedORPOTrainer
