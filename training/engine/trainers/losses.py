"""Causal-LM loss without materialising the logits: a chunked, fused "linear + cross-entropy".

For each chunk of trained positions the vocabulary projection, the log-sum-exp, the loss and the gradients with
respect to the hidden states (and the output-embedding weight when it is trained) are computed in the forward pass;
only one chunk of logits exists at a time and nothing vocabulary-sized is kept for backward, which just scales the
stored gradients. Same FLOPs as the plain path (one projection forward, one gradient matmul), far less peak memory:
on SmolLM2 (vocab 49k) a 1k-token step no longer holds 4 x tokens x vocab floats.
"""

from __future__ import annotations

from typing import Any

from training.engine.memory import LOGITS_CHUNK_ELEMENTS, VOCAB_MAJOR_CHUNK_ELEMENTS

# Model types whose head is a plain ``lm_head`` Linear applied to the decoder's last hidden state (no logit
# soft-capping or scaling), so the fused loss equals the model's own logits -> cross-entropy.
FUSED_LOSS_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3", "olmo2"})
_CHUNK_ELEMENTS = LOGITS_CHUNK_ELEMENTS  # logits per chunk (32 MB in fp32)


def _function() -> Any:
    import torch

    class LinearCrossEntropy(torch.autograd.Function):
        """sum(CE(hidden @ weight.T, targets)) / denom, gradients computed chunk by chunk in forward."""

        @staticmethod
        def forward(ctx: Any, hidden: Any, weight: Any, targets: Any, denom: Any) -> Any:  # type: ignore[override]
            need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            grad_h = torch.empty_like(hidden) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
            scale = 1.0 / denom
            if hidden.dtype == torch.float32 and weight.dtype == torch.float32:
                total = _fp32_vocab_major(hidden, weight, targets, scale, grad_h, grad_w)
            else:
                total = _row_major(hidden, weight, targets, scale, grad_h, grad_w)
            ctx.save_for_backward(*(g for g in (grad_h, grad_w) if g is not None))
            ctx.has = (grad_h is not None, grad_w is not None)
            ctx.weight_dtype = weight.dtype
            return total * scale

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> Any:  # type: ignore[override]
            saved = list(ctx.saved_tensors)
            grad_h = saved.pop(0) * grad_out if ctx.has[0] else None
            grad_w = (saved.pop(0) * grad_out).to(ctx.weight_dtype) if ctx.has[1] else None
            return grad_h, grad_w, None, None

    return LinearCrossEntropy


def _row_major(hidden: Any, weight: Any, targets: Any, scale: float, grad_h: Any, grad_w: Any) -> Any:
    """The forward of ``LinearCrossEntropy`` on ``[rows, vocab]`` chunks of ``_CHUNK_ELEMENTS`` logits (bf16 and
    mixed dtypes): the summed loss, the gradients written into ``grad_h`` / ``grad_w`` where given."""
    import torch

    rows, vocab = hidden.shape[0], weight.shape[0]
    chunk = max(16, _CHUNK_ELEMENTS // max(vocab, 1))
    need_h, need_w = grad_h is not None, grad_w is not None
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    # The input-gradient matmul runs in the hidden states' dtype (bf16 under autocast): the weight is cast once here,
    # not once per chunk, and the probabilities once per chunk.
    dtype = hidden.dtype
    w_compute = weight if weight.dtype == dtype else weight.to(dtype)
    width = min(chunk, rows)
    # Vocabulary-sized buffers live for the process (``_scratch``): a fresh one per call or chunk is served by mmap and
    # page-faulted in again each time, which cost as much as the chunk's matmul.
    exps_buf = _scratch("exps", width, vocab, torch.float32, hidden.device)
    same = dtype == torch.float32
    logits_buf = exps_buf if same else _scratch("logits", width, vocab, dtype, hidden.device)
    grad_buf = None if same or not need_h or need_w else _scratch("grad", width, vocab, dtype, hidden.device)
    for start in range(0, rows, chunk):
        h = hidden[start : start + chunk]
        t = targets[start : start + chunk]
        n = h.shape[0]
        logits = torch.mm(h, w_compute.t(), out=logits_buf[:n])
        picked = logits.gather(1, t[:, None]).squeeze(1).float()
        # log-sum-exp and softmax from one exp pass over one fp32 buffer (the subtraction of the row maximum also
        # widens the logits to fp32)
        peak = logits.amax(dim=-1, keepdim=True)
        exps = torch.sub(logits, peak, out=exps_buf[:n]).exp_()
        sums = exps.sum(dim=-1, keepdim=True)
        total += (peak.float() + sums.log()).squeeze(1).sub_(picked).sum()
        if need_h or need_w:
            # softmax / denom - onehot / denom = (exps - onehot * sums) * (1 / (sums * denom))
            exps[torch.arange(n, device=exps.device), t] -= sums.squeeze(1)
            coef = sums.reciprocal_().mul_(scale)
            probs = exps.mul_(coef)
            if grad_buf is not None:
                # rounded to the compute dtype by one vectorized copy: a mixed-dtype ``torch.mul(..., out=bf16)``
                # doing both took 2.7x as long (4.3 vs 1.6 ms for 170 x 49152, 2-core AMX Xeon)
                probs = grad_buf[:n].copy_(probs)
            if grad_h is not None:
                torch.mm(probs.to(dtype), w_compute, out=grad_h[start : start + n])
            if grad_w is not None:
                grad_w.addmm_(probs.float().t(), h.float())
    return total


# fp32 chunks in the vocabulary-major layout: rows (trained positions) per chunk. Measured on a 2-core AVX2 CPU
# (fp32 is what a CPU without bf16 units trains in) for 1000 positions of SmolLM2 (vocab 49k, hidden 576), projection
# + softmax + input gradient: 170-row chunks in the usual [rows, vocab] layout 1570 ms; 512-row chunks in that layout
# 1274 ms; [vocab, rows] chunks of 256 / 512 / 1000 rows 1059 / 993 / 1177 ms. ``W @ h.T`` with a wide ``W`` runs
# the projection at the matmul roofline where ``h @ W.T`` with few rows does not.
VOCAB_MAJOR_ROWS = 512


def vocab_major_rows(vocab: int) -> int:
    """Positions per fp32 vocabulary-major chunk: ``VOCAB_MAJOR_ROWS``, fewer for a vocabulary larger than SmolLM2's
    (a chunk holds at most ``memory.VOCAB_MAJOR_CHUNK_ELEMENTS`` logits)."""
    return max(1, min(VOCAB_MAJOR_ROWS, VOCAB_MAJOR_CHUNK_ELEMENTS // max(vocab, 1)))


def _fp32_vocab_major(hidden: Any, weight: Any, targets: Any, scale: float, grad_h: Any, grad_w: Any) -> Any:
    """The fp32 forward of ``LinearCrossEntropy`` on ``[vocab, rows]`` chunks (logits transposed): the same loss
    and gradients (into ``grad_h`` / ``grad_w`` where given), the softmax taken down the columns."""
    import torch

    rows, vocab = hidden.shape[0], weight.shape[0]
    chunk = vocab_major_rows(vocab)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    flat = _scratch("exps", 1, min(chunk, rows) * vocab, torch.float32, hidden.device).view(-1)
    for start in range(0, rows, chunk):
        h = hidden[start : start + chunk]
        t = targets[start : start + chunk]
        n = h.shape[0]
        logits = torch.mm(weight, h.t(), out=flat[: vocab * n].view(vocab, n))
        picked = logits.gather(0, t[None, :]).squeeze(0)
        peak = logits.amax(dim=0, keepdim=True)
        exps = logits.sub_(peak).exp_()
        sums = exps.sum(dim=0, keepdim=True)
        total += (peak + sums.log()).squeeze(0).sub_(picked).sum()
        if grad_h is not None or grad_w is not None:
            exps[t, torch.arange(n, device=exps.device)] -= sums.squeeze(0)
            probs = exps.mul_(sums.reciprocal_().mul_(scale))
            if grad_h is not None:
                torch.mm(probs.t(), weight, out=grad_h[start : start + n])
            if grad_w is not None:
                grad_w.addmm_(probs, h)
    return total


_SCRATCH: dict[tuple[str, Any, str], Any] = {}


def _scratch(name: str, rows: int, cols: int, dtype: Any, device: Any) -> Any:
    """A ``(rows, cols)`` work buffer kept for the life of the process (grown when a larger one is asked for)."""
    import torch

    key = (name, dtype, str(device))
    buf = _SCRATCH.get(key)
    if buf is None or buf.numel() < rows * cols:
        buf = torch.empty(rows * cols, dtype=dtype, device=device)
        _SCRATCH[key] = buf
    return buf[: rows * cols].view(rows, cols)


_FN: Any = None


def linear_cross_entropy(hidden: Any, weight: Any, targets: Any, denom: float) -> Any:
    """Mean-style causal-LM loss ``sum(CE(hidden @ weight.T, targets)) / denom`` without full logits."""
    global _FN
    if _FN is None:
        _FN = _function()
    return _FN.apply(hidden, weight, targets, float(denom))
