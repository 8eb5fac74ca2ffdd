"""DPO on CPU without padding, per-step reference passes or full logits (``PackedDPOTrainer``).

Stock ``trl.DPOTrainer`` (1.16) pads the micro-batch's chosen and rejected sequences to the longest one, runs the
reference model (the base with the LoRA adapter disabled) every step, and on devices without Triton its fused LM head
projects *every* position (prompt and padding included) onto the vocabulary, then projects them again in backward.
On a CPU each of those is real time. This path keeps TRL's data pipeline, loss types, metrics and logging, and
changes only how the per-token log-probabilities are computed:

- the reference log-probs are computed once before training (TRL's ``precompute_ref_log_probs`` machinery, fed by
  the packed no-grad forward below with the adapter disabled), so a step is one policy forward + backward;
- the 2B sequences of a micro-batch are packed padding-free into one row, each pair's shared prompt once (the
  rejected rest branches off it), and run through the per-sequence attention of ``packed_attention.py``;
- only the completion positions are projected onto the vocabulary, by a chunked "linear + log-softmax gather"
  (``linear_logprobs``) that computes the gradient with respect to the hidden states in forward
  (``d log p(t) / d h = W[t] - softmax(h W^T) @ W``) and only scales it by the upstream per-token gradient in
  backward: one chunk of logits exists at a time, and there is no recomputation.

The model call TRL makes (``model(input_ids, attention_mask, labels, fused_lm_head=True)``) is answered by
``PackedCausalLM`` with per-token fields in TRL's padded ``[2B, T-1]`` layout, so TRL's own loss code (every loss
type, ``ld_alpha``, the reward and logit metrics) runs unchanged on top of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from training.engine.memory import LOGITS_CHUNK_ELEMENTS

# TRL 1.16's DPO losses, all computed by TRL from per-token log-probs of the completions (and completion lengths),
# which is what the packed forward provides. A loss type TRL adds later is not assumed to fit: it runs on stock TRL.
PACKED_LOSS_TYPES = frozenset(
    {
        "sigmoid",
        "hinge",
        "ipo",
        "exo_pair",
        "nca_pair",
        "robust",
        "bco_pair",
        "sppo_hard",
        "aot",
        "aot_unpaired",
        "apo_zero",
        "apo_down",
        "discopop",
        "sft",
        "sigmoid_norm",
    }
)
_CHUNK_ELEMENTS = LOGITS_CHUNK_ELEMENTS  # logits per chunk (32 MB in fp32)


# --- path selection ------------------------------------------------------------------------------------------------


def precompute_pays(*, max_steps: int, rows_per_step: int, train_rows: int) -> bool:
    """Whether to compute the reference log-probs of every training pair once before training: when the run trains
    on every pair at least once (an epoch-based run, or enough steps). TRL's precompute covers the whole dataset, so a
    run of a few steps over a large dataset would pay for pairs it never trains on; it then computes the reference
    with each step instead (one no-grad packed forward of the step's pairs)."""
    return max_steps <= 0 or max_steps * rows_per_step >= train_rows


def spec_loss_types(hyper: Any) -> list[str]:
    """A spec's DPO loss type as TRL's list (sigmoid unless set)."""
    return [hyper.loss_type] if hyper.loss_type else ["sigmoid"]


@dataclass(frozen=True)
class DpoPath:
    """Which implementation a preference run (DPO, ORPO) uses, and why (for the job log)."""

    packed: bool
    reason: str
    stock: str = "stock TRL DPOTrainer"

    def describe(self) -> str:
        """One line for the job log."""
        if self.packed:
            return (
                "packed (padding-free rows, per-sequence attention, fused chunked log-probs of the used positions; "
                f"{self.reason})"
            )
        return f"{self.stock} ({self.reason})"


def packed_refusal(*, device_type: str, use_unsloth: bool, num_processes: int, supports_packed: bool) -> str | None:
    """Why a preference run cannot take a packed CPU path (DPO's or ORPO's), or None: they need the CPU, no
    Unsloth, one process and a model with a plain linear head and packed-sequence support."""
    if device_type != "cpu":
        return f"device {device_type}"
    if use_unsloth:
        return "Unsloth"
    if num_processes != 1:
        return f"{num_processes} processes"
    if not supports_packed:
        return "the model lacks a plain linear head or packed-sequence support"
    return None


def reference_path_refusal(
    *, weights: str, loss_types: Sequence[str], supported: frozenset[str], **common: Any
) -> str | None:
    """Why a method scored against a reference (DPO, KTO) cannot take its packed path, or None: ``packed_refusal``'s
    conditions, LoRA or full weights (the reference is the base with the adapter disabled, or for full weights the
    model before training when precomputed, else TRL's frozen copy; both go through the packed forward) and only
    ``supported`` losses."""
    refusal = packed_refusal(**common)
    if refusal is None and weights not in ("lora", "full"):
        refusal = f"{weights} weights"
    if refusal is None:
        unknown = [t for t in loss_types if t not in supported]
        if unknown:
            refusal = f"loss type {', '.join(unknown)} is not supported by the packed path"
    return refusal


def select_dpo_path(*, loss_types: Sequence[str], use_weighting: bool = False, **inputs: Any) -> DpoPath:
    """The packed path on CPU for LoRA or full weights on a model with a plain linear head and packed-attention
    support, one process, and loss types TRL computes from per-token log-probs (``reference_path_refusal``;
    ``inputs`` as ``PreferenceTrainer.packed_inputs``); stock TRL otherwise (with the reason)."""
    refusal = reference_path_refusal(loss_types=loss_types, supported=PACKED_LOSS_TYPES, **inputs)
    if refusal is None and use_weighting:
        refusal = "WPO weighting needs per-token log(sum p^2)"
    if refusal is not None:
        return DpoPath(False, refusal)
    return DpoPath(True, f"loss {'+'.join(loss_types)}")


# --- the fused linear + log-softmax gather ---------------------------------------------------------------------------


def _chunk_rows(vocab: int) -> int:
    return max(16, _CHUNK_ELEMENTS // max(vocab, 1))


def _outputs(hidden: Any, *, stats: bool, grad_hidden: bool) -> tuple[Any, ...]:
    """The per-token outputs of ``_forward_chunks``, empty: log-probs, entropy, mean logit, top-1 hit (the three
    statistics empty without ``stats``) and ``d logp / d hidden`` (None without ``grad_hidden``)."""
    import torch

    rows, device = hidden.shape[0], hidden.device
    stat_rows = rows if stats else 0
    return (
        torch.empty(rows, dtype=torch.float32, device=device),
        torch.empty(stat_rows, dtype=torch.float32, device=device),
        torch.empty(stat_rows, dtype=torch.float32, device=device),
        torch.empty(stat_rows, dtype=torch.bool, device=device),
        torch.empty_like(hidden) if grad_hidden else None,
    )


def _forward_chunks(hidden: Any, weight: Any, targets: Any, *, stats: bool, grad_hidden: bool) -> tuple[Any, ...]:
    """Per-token ``log softmax(hidden @ weight.T)[target]`` chunk by chunk (fp32), optionally the per-token entropy,
    mean logit and top-1 hit (TRL's logging metrics), and ``d logp / d hidden`` (``W[t] - p @ W``, hidden's dtype).
    fp32 runs on vocabulary-major chunks (``_forward_chunks_vocab_major``), as the SFT loss does."""
    import torch

    if hidden.dtype == torch.float32 and weight.dtype == torch.float32:
        return _forward_chunks_vocab_major(hidden, weight, targets, stats=stats, grad_hidden=grad_hidden)
    rows, vocab = hidden.shape[0], weight.shape[0]
    device = hidden.device
    chunk = _chunk_rows(vocab)
    w = weight if weight.dtype == hidden.dtype else weight.to(hidden.dtype)  # cast once, not per chunk
    logp, entropy, mean_logits, is_top1, d_hidden = _outputs(hidden, stats=stats, grad_hidden=grad_hidden)
    width = min(chunk, max(rows, 1))
    # Reused fp32 buffers (a fresh vocabulary-sized block per chunk is page-faulted in again each time, see losses.py)
    logits_buf = torch.empty((width, vocab), dtype=torch.float32, device=device)
    exps_buf = torch.empty((width, vocab), dtype=torch.float32, device=device) if stats else None
    for start in range(0, rows, chunk):
        end = min(start + chunk, rows)
        t = targets[start:end]
        z = logits_buf[: end - start]
        z.copy_(hidden[start:end] @ w.t())
        picked = z.gather(1, t[:, None])
        peak = z.amax(dim=1, keepdim=True)
        if stats and exps_buf is not None:
            mean_logits[start:end] = z.mean(dim=1)
            is_top1[start:end] = z.argmax(dim=1) == t
            shifted = z.sub_(peak)
            exps = torch.exp(shifted, out=exps_buf[: end - start])
            sums = exps.sum(dim=1, keepdim=True)
            # entropy = logsumexp - E_p[z] = log(sum e) - sum(e * (z - peak)) / sum e
            weighted = shifted.mul_(exps).sum(dim=1, keepdim=True)
            entropy[start:end] = (sums.log() - weighted / sums).squeeze(1)
        else:
            exps = z.sub_(peak).exp_()
            sums = exps.sum(dim=1, keepdim=True)
        logp[start:end] = (picked - peak - sums.log()).squeeze(1)
        if d_hidden is not None:
            # onehot(t) - softmax, then one matmul: d logp / d h for every row of the chunk
            grad = exps.mul_(sums.reciprocal_().neg_())
            grad[torch.arange(end - start, device=device), t] += 1.0
            d_hidden[start:end] = grad.to(w.dtype) @ w
    return logp, entropy, mean_logits, is_top1, d_hidden


def _forward_chunks_vocab_major(
    hidden: Any, weight: Any, targets: Any, *, stats: bool, grad_hidden: bool
) -> tuple[Any, ...]:
    """``_forward_chunks`` for fp32 on ``[vocab, positions]`` chunks (``W @ h.T``, the softmax down the columns):
    the projection runs near the matmul roofline where ``h @ W.T`` with few rows does not (``losses.py``)."""
    import torch

    from .losses import _scratch, vocab_major_rows

    rows, vocab = hidden.shape[0], weight.shape[0]
    device = hidden.device
    chunk = vocab_major_rows(vocab)
    logp, entropy, mean_logits, is_top1, d_hidden = _outputs(hidden, stats=stats, grad_hidden=grad_hidden)
    width = min(chunk, max(rows, 1))
    logits_flat = _scratch("exps", 1, width * vocab, torch.float32, device).view(-1)
    exps_flat = _scratch("exps2", 1, width * vocab, torch.float32, device).view(-1) if stats else None
    for start in range(0, rows, chunk):
        end = min(start + chunk, rows)
        n = end - start
        t = targets[start:end]
        z = torch.mm(weight, hidden[start:end].t(), out=logits_flat[: vocab * n].view(vocab, n))
        picked = z.gather(0, t[None, :]).squeeze(0)
        peak = z.amax(dim=0, keepdim=True)
        if stats and exps_flat is not None:
            mean_logits[start:end] = z.mean(dim=0)
            is_top1[start:end] = z.argmax(dim=0) == t
            shifted = z.sub_(peak)
            exps = torch.exp(shifted, out=exps_flat[: vocab * n].view(vocab, n))
            sums = exps.sum(dim=0, keepdim=True)
            weighted = shifted.mul_(exps).sum(dim=0, keepdim=True)
            entropy[start:end] = (sums.log() - weighted / sums).squeeze(0)
        else:
            exps = z.sub_(peak).exp_()
            sums = exps.sum(dim=0, keepdim=True)
        logp[start:end] = picked - peak.squeeze(0) - sums.log().squeeze(0)
        if d_hidden is not None:
            grad = exps.mul_(sums.reciprocal_().neg_())
            grad[t, torch.arange(n, device=device)] += 1.0
            torch.mm(grad.t(), weight, out=d_hidden[start:end])
    return logp, entropy, mean_logits, is_top1, d_hidden


def _weight_grad(hidden: Any, weight: Any, targets: Any, grad_logp: Any) -> Any:
    """``d sum(g * logp) / d weight`` (fp32), recomputing each chunk's softmax (only for a trained head)."""
    import torch

    rows, vocab = hidden.shape[0], weight.shape[0]
    chunk = _chunk_rows(vocab)
    w = weight if weight.dtype == hidden.dtype else weight.to(hidden.dtype)
    out = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
    for start in range(0, rows, chunk):
        end = min(start + chunk, rows)
        h = hidden[start:end]
        t = targets[start:end]
        probs = torch.softmax((h @ w.t()).float(), dim=1)
        grad = probs.mul_(-grad_logp[start:end, None].float())
        grad[torch.arange(end - start, device=grad.device), t] += grad_logp[start:end].float()
        out.addmm_(grad.t(), h.float())
    return out


def _function() -> Any:
    import torch

    class LinearLogProbs(torch.autograd.Function):
        """Per-token log-probs of ``targets`` under ``hidden @ weight.T``; see ``linear_logprobs``."""

        @staticmethod
        def forward(ctx: Any, hidden: Any, weight: Any, targets: Any, stats: bool) -> Any:  # type: ignore[override]
            ctx.set_materialize_grads(False)
            need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            logp, entropy, mean_logits, is_top1, d_hidden = _forward_chunks(
                hidden, weight, targets, stats=stats, grad_hidden=need_h
            )
            ctx.need_h, ctx.need_w = need_h, need_w
            saved = [d_hidden] if need_h else []
            if need_w:
                saved += [hidden, weight, targets]
            ctx.save_for_backward(*saved)
            ctx.mark_non_differentiable(entropy, mean_logits, is_top1)
            return logp, entropy, mean_logits, is_top1

        @staticmethod
        def backward(ctx: Any, grad_logp: Any, *_unused: Any) -> Any:  # type: ignore[override]
            if grad_logp is None:
                return None, None, None, None
            saved = list(ctx.saved_tensors)
            grad_h = grad_w = None
            if ctx.need_h:
                d_hidden = saved.pop(0)
                grad_h = (d_hidden.float() * grad_logp[:, None].float()).to(d_hidden.dtype)
            if ctx.need_w:
                hidden, weight, targets = saved
                grad_w = _weight_grad(hidden, weight, targets, grad_logp).to(weight.dtype)
            return grad_h, grad_w, None, None

    return LinearLogProbs


_FN: Any = None


def linear_logprobs(hidden: Any, weight: Any, targets: Any, *, stats: bool = False) -> tuple[Any, Any, Any, Any]:
    """Per-token ``log_softmax(hidden @ weight.T)[targets]`` (fp32, shape ``[N]``) without the full logits.

    With ``stats`` also the per-token entropy, mean logit and whether the target is the top-1 token (no gradient;
    empty tensors otherwise). The gradient with respect to ``hidden`` is computed chunk by chunk in forward and
    scaled by the upstream per-token gradient in backward; a trained ``weight`` gets its gradient in backward."""
    import torch

    global _FN
    if not (torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)):
        logp, entropy, mean_logits, is_top1, _ = _forward_chunks(
            hidden, weight, targets, stats=stats, grad_hidden=False
        )
        return logp, entropy, mean_logits, is_top1
    if _FN is None:
        _FN = _function()
    return _FN.apply(hidden, weight, targets, stats)


# --- the packed forward --------------------------------------------------------------------------------------------


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _pair_layout(input_ids: Any, keep: Any) -> tuple[Any, Any, Any]:
    """The padding-free row of TRL's ``[2B, T]`` preference batch (row ``i`` chosen, row ``B + i`` its rejected):
    per pair the chosen sequence, then the rejected one's tokens after the prefix the two share (the prompt, and any
    first completion tokens they have in common), with ``position_ids`` falling back to the prefix's length so the
    packed attention lets them see that prefix and not the chosen rest. The shared prefix is computed once: on
    HH-RLHF it is 38% of the pairs' tokens. Returns the row's token ids ``[N]``, its position ids ``[N]`` and, for
    every token of the batch, its place in the row (``[2B, T]``, -1 for padding). An odd batch packs each row whole."""
    import torch

    rows = input_ids.shape[0]
    pairs = rows // 2 if rows % 2 == 0 else 0
    real = [input_ids[r][keep[r]] for r in range(rows)]
    flat_index = torch.full(input_ids.shape, -1, dtype=torch.long, device=input_ids.device)
    ids, positions = [], []
    base = 0

    def place(row: int, index: Any) -> None:
        flat_index[row][keep[row]] = index

    for i in range(pairs):
        chosen, rejected = real[i], real[pairs + i]
        n = min(len(chosen), len(rejected))
        same = chosen[:n] == rejected[:n]
        shared = n if bool(same.all()) else int(same.int().argmin())  # the first position that differs
        ids += [chosen, rejected[shared:]]
        positions += [torch.arange(len(chosen)), torch.arange(shared, len(rejected))]
        place(i, base + torch.arange(len(chosen)))
        rest = base + len(chosen) + torch.arange(len(rejected) - shared)
        place(pairs + i, torch.cat([base + torch.arange(shared), rest]))
        base += len(chosen) + len(rejected) - shared
    for r in range(2 * pairs, rows):
        ids.append(real[r])
        positions.append(torch.arange(len(real[r])))
        place(r, base + torch.arange(len(real[r])))
        base += len(real[r])
    device = input_ids.device
    return torch.cat(ids), torch.cat(positions).to(device), flat_index


def packed_token_logprobs(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    labels: Any,
    *,
    stats: bool = False,
    autocast: Callable[[], AbstractContextManager[Any]] | None = None,
) -> dict[str, Any]:
    """Per-token log-probs of the padded batch's labelled tokens, computed on one padding-free row.

    ``input_ids``/``attention_mask``/``labels`` are TRL's padded ``[2B, T]`` batch (labels ``-100`` outside the
    completions), chosen rows first. The real tokens are packed into one row, each pair's shared prompt once
    (``_pair_layout``; the packed attention keeps the sequences apart), the decoder runs once, and only the hidden
    states that predict a labelled token are projected (``linear_logprobs``). Returns ``log_probs`` (and with
    ``stats`` ``entropy``, ``mean_logits``, ``is_top1``) in the shifted ``[2B, T-1]`` layout, zero where there is no
    label, and ``label_mask``."""
    import contextlib

    import torch

    keep = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
    ids, positions, flat_index = _pair_layout(input_ids, keep)
    label_mask = (labels[:, 1:] != -100) & keep[:, 1:] & keep[:, :-1]
    source = flat_index[:, :-1][label_mask]  # hidden state that predicts each labelled token (row-major order)
    targets = input_ids[:, 1:][label_mask]
    base = _base(model)
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    with autocast() if autocast is not None else contextlib.nullcontext():
        hidden = decoder(input_ids=ids[None], position_ids=positions[None], use_cache=False).last_hidden_state[0]
    logp, entropy, mean_logits, is_top1 = linear_logprobs(hidden[source], head.weight, targets, stats=stats)
    shape = label_mask.shape
    out: dict[str, Any] = {
        "log_probs": logp.new_zeros(shape).masked_scatter(label_mask, logp),
        "label_mask": label_mask,
        "entropy": None,
        "mean_logits": None,
        "is_top1": None,
    }
    if stats:
        out["entropy"] = entropy.new_zeros(shape).masked_scatter(label_mask, entropy)
        out["mean_logits"] = mean_logits.new_zeros(shape).masked_scatter(label_mask, mean_logits)
        out["is_top1"] = is_top1.new_zeros(shape).masked_scatter(label_mask, is_top1)
    return out


class PackedCausalLM:
    """Answers TRL's ``model(input_ids=..., attention_mask=..., labels=..., fused_lm_head=True)`` with the packed
    forward (a ``FusedCausalLMOutput`` in TRL's padded layout); any other call goes to the model itself."""

    def __init__(self, model: Any, autocast: Callable[[], AbstractContextManager[Any]], *, stats: bool) -> None:
        self.model = model
        self.autocast = autocast
        self.stats = stats

    @staticmethod
    def answers(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether a call is one the packed forward answers: keywords only, ``input_ids``/``attention_mask``/
        ``labels`` (given) with ``fused_lm_head=True`` (and any ``use_cache``)."""
        allowed = {"input_ids", "attention_mask", "labels", "fused_lm_head", "use_cache"}
        return (
            not args
            and bool(kwargs.get("fused_lm_head"))
            and kwargs.get("labels") is not None
            and set(kwargs) <= allowed
        )

    @staticmethod
    def output(fields: dict[str, Any]) -> Any:
        """``packed_token_logprobs``'s fields as the ``FusedCausalLMOutput`` TRL reads."""
        from trl.trainer.utils import FusedCausalLMOutput

        return FusedCausalLMOutput(loss=None, aux_loss=None, log_sum_sq_probs=None, **fields)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.answers(args, kwargs):
            kwargs.pop("use_cache", None)
            if not kwargs.get("fused_lm_head", True):
                del kwargs["fused_lm_head"]
            return self.model(*args, **kwargs, use_cache=False)
        out = packed_token_logprobs(
            self.model,
            kwargs["input_ids"],
            kwargs.get("attention_mask"),
            kwargs["labels"],
            stats=self.stats,
            autocast=self.autocast,
        )
        return self.output(out)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


# --- the trainer ---------------------------------------------------------------------------------------------------


class TimedPrecompute:
    """Mixed in before a TRL preference trainer: times TRL's up-front reference pass (``precompute_s``) and counts
    the rows it covered (``precompute_count``: pairs for DPO, rows for KTO; training and eval sets together)."""

    precompute_s: float = 0.0
    precompute_count: int = 0

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        started = time.perf_counter()
        try:
            return super()._precompute_ref_logps(dataset, name, batch_size)  # type: ignore[misc]
        finally:
            self.precompute_s += time.perf_counter() - started
            self.precompute_count += len(dataset)


class StepReference:
    """Mixed in before a TRL preference trainer (DPO, KTO) whose ``_compute_loss`` reads precomputed reference
    log-probs from the batch when ``precompute_ref_logps`` is set. When they were not precomputed (a run that trains
    on part of its data, ``precompute_pays``), the step computes them with TRL's own per-batch reference pass
    (``compute_ref_log_probs``: the adapter disabled or the reference model, no grad), which the packed trainers
    answer with the packed forward, and hands them to the loss as if precomputed: TRL's in-step path would call the
    model on the padded batch and project every position onto the vocabulary. ``reference_keys`` names the batch
    keys of ``compute_ref_log_probs``'s results in order (a None result is left out)."""

    reference_keys: tuple[str, ...] = ()

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        if self.precompute_ref_logps:  # type: ignore[attr-defined]
            return super()._compute_loss(model, inputs, return_outputs)  # type: ignore[misc]
        reference = self.ref_model if self.ref_model is not None else self.model  # type: ignore[attr-defined]
        values = self.compute_ref_log_probs(reference, inputs)  # type: ignore[attr-defined]
        inputs = {**inputs, **{k: v for k, v in zip(self.reference_keys, values, strict=True) if v is not None}}
        self.precompute_ref_logps = True
        try:
            return super()._compute_loss(model, inputs, return_outputs)  # type: ignore[misc]
        finally:
            self.precompute_ref_logps = False


def packed_dpo_trainer_class(base: type) -> type:
    """``base`` (a ``trl.DPOTrainer`` subclass, e.g. with the engine mixin) whose policy and reference log-probs
    come from the packed forward. Built with ``precompute_ref_log_probs=True`` a step is one policy forward +
    backward; without, each step adds one no-grad packed reference forward (``StepReference``). ``precompute_s`` is
    the time an up-front reference pass took."""

    class PackedDPOTrainer(StepReference, TimedPrecompute, base):  # type: ignore[misc, valid-type]
        """``DPOTrainer`` on padding-free rows with fused completion-only log-probs (see ``dpo_packed``)."""

        reference_keys = ("ref_chosen_logps", "ref_rejected_logps")

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            policy = PackedCausalLM(model, self.accelerator.autocast, stats=True)
            return super().compute_loss(policy, inputs, return_outputs, num_items_in_batch)

        def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
            # TRL disables the adapter (or selects the "ref" adapter) and enters no_grad + autocast around this call
            return super().compute_ref_log_probs(PackedCausalLM(model, self.accelerator.autocast, stats=False), inputs)

    return PackedDPOTrainer
