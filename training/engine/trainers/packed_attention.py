"""Attention for padding-free batches: causal attention within each packed sequence.

transformers' own answer to packed ``position_ids`` under SDPA is a dense block-diagonal mask over the whole packed
row: attention then costs (sum of lengths)^2 instead of the sum of length^2, and the masked SDPA path cannot use the
causal fast kernel. Here the mask is skipped (``attention_mask is None``) and each sequence (found from the restarts
of ``position_ids``) runs causal attention on its own slice: ``scaled_dot_product_attention(is_causal=True)``, or on
CPU for sequences up to ``FINETUNE_CPU_DIRECT_ATTENTION_MAX`` tokens blocked grouped matmuls with a written-out
backward (faster there, see ``packed_direct_attention``). Any other input (padded batches with a mask, generation
with a KV cache) falls through to the stock SDPA implementation.

A sequence may also *branch* off the one before it to share its prefix (DPO and ORPO pack a pair as prompt, chosen
rest, rejected rest, so the prompt is computed once): where ``position_ids`` fall back to ``p > 0`` instead of
restarting at 0, the tokens from there attend to the first ``p`` tokens of the sequence before them (the shared
prefix) and causally to themselves, never to that sequence's own continuation.
"""

from __future__ import annotations

from typing import Any

NAME = "finetune_packed_sdpa"
_registered = False


Segment = tuple[int, int, int, int]  # (start, end, prefix start, prefix length): tokens start..end-1 of the row
# attend causally to themselves after the prefix_length tokens at prefix start (0 and 0 for a sequence of its own)


def _segments(position_ids: Any, length: int) -> list[Segment] | None:
    """The packed row's sequences from its ``position_ids``: a restart at 0 begins a sequence of its own, a fall back
    to ``p > 0`` a branch sharing the first ``p`` tokens of the sequence it follows. None for anything else (a row
    that does not start at 0, a jump forward, a branch longer than its root)."""
    row = position_ids[0] if position_ids.dim() == 2 else position_ids
    if row.shape[-1] != length or int(row[0]) != 0:
        return None
    values = row.tolist()
    breaks = [i for i in range(1, length) if values[i] != values[i - 1] + 1]
    segments: list[Segment] = []
    root = 0
    for start, end in zip([0, *breaks], [*breaks, length], strict=True):
        p = values[start]
        if p == 0:
            root = start
            segments.append((start, end, 0, 0))
        elif p <= values[start - 1] and root + p <= start and values[root + p - 1] == p - 1:
            segments.append((start, end, root, p))
        else:
            return None
    return segments


def packed_sdpa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """Per-sequence causal SDPA for a single packed row; the stock SDPA path otherwise."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    q_len = query.shape[2]
    segments = None
    if (
        attention_mask is None
        and position_ids is not None
        and query.shape[0] == 1
        and q_len == key.shape[2]
        and q_len > 1
        and getattr(module, "is_causal", True)
    ):
        segments = _segments(position_ids, q_len)
    if segments is None or (len(segments) == 1 and not segments[0][3]):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )

    gqa = getattr(module, "num_key_value_groups", 1) > 1
    p = dropout if module.training else 0.0
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    direct_max = cpu_direct_max_length() if query.device.type == "cpu" and p == 0.0 else 0
    if all(e - s + n <= direct_max for s, e, _, n in segments):
        return packed_direct_attention(query, key, value, segments, scale), None
    outs = [_one_segment(query, key, value, segment, scale, direct_max, p, gqa) for segment in segments]
    return torch.cat(outs, dim=1).contiguous(), None


def _one_segment(
    query: Any, key: Any, value: Any, segment: Segment, scale: float, direct_max: int, dropout: float, gqa: bool
) -> Any:
    """One sequence of the row, ``(1, n, heads, dim)``: the direct kernel up to ``direct_max`` tokens (prefix
    included), SDPA's kernel beyond (causal, or with an explicit mask for a branch)."""
    import torch
    import torch.nn.functional as F

    s, e, ps, n = segment
    k, v = key[:, :, s:e], value[:, :, s:e]
    if n:  # the shared prefix's keys and values first, as one sequence of n + (e - s) positions
        k = torch.cat([key[:, :, ps : ps + n], k], dim=2)
        v = torch.cat([value[:, :, ps : ps + n], v], dim=2)
    if e - s + n <= direct_max:
        q = torch.cat([query[:, :, ps : ps + n], query[:, :, s:e]], dim=2) if n else query[:, :, s:e]
        return packed_direct_attention(q, k, v, [(n, n + e - s, 0, n)], scale)[:, n:]
    mask = None
    if n:
        mask = torch.ones((e - s, n + e - s), dtype=torch.bool, device=query.device).tril(diagonal=n)
    return F.scaled_dot_product_attention(
        query[:, :, s:e], k, v, attn_mask=mask, is_causal=not n, dropout_p=dropout, scale=scale, enable_gqa=gqa
    ).transpose(1, 2)


def cpu_direct_max_length() -> int:
    """Longest sequence given the direct (two-matmul) attention on CPU: ``FINETUNE_CPU_DIRECT_ATTENTION_MAX``,
    default 512; 0 turns it off. Longer sequences use SDPA's flash kernel, whose memory does not grow with L^2."""
    import os

    try:
        return max(0, int(os.environ.get("FINETUNE_CPU_DIRECT_ATTENTION_MAX", "512")))
    except ValueError:
        return 512


_BIASES: dict[tuple[int, int, int, Any, str], Any] = {}
QUERY_BLOCK = 128  # query positions per block: a block attends to the keys up to its last position only


def _causal_bias(start: int, end: int, groups: int, dtype: Any, device: Any) -> Any:
    """The additive causal mask of query positions ``start..end-1`` (each repeated for the ``groups`` query heads
    sharing a key/value head, position-major) over keys ``0..end-1``: 0 where the key is not after the query, -inf
    where it is. ``((end - start) * groups, end)``, cached per shape."""
    import torch

    key = (start, end, groups, dtype, str(device))
    bias = _BIASES.get(key)
    if bias is None:
        positions = torch.arange(start, end, device=device).repeat_interleave(groups)
        keys = torch.arange(end, device=device)
        bias = torch.zeros((positions.shape[0], end), dtype=dtype, device=device)
        bias.masked_fill_(keys[None, :] > positions[:, None], float("-inf"))
        if len(_BIASES) > 64:
            _BIASES.clear()
        _BIASES[key] = bias
    return bias


def _blocks(length: int) -> list[tuple[int, int]]:
    """Query position blocks of one sequence: about ``QUERY_BLOCK`` positions each, in equal parts."""
    count = max(1, -(-length // QUERY_BLOCK))
    bounds = [round(i * length / count) for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


_FN: Any = None


def _function() -> Any:
    import torch

    class PackedCausalAttention(torch.autograd.Function):
        """Causal attention of each sequence of a packed row as batched matmuls, forward and backward written out
        (no autograd graph of a dozen nodes per sequence).

        Per sequence the query heads that share a key/value head form one position-major ``(length * groups,
        dim)`` matrix (no key/value expansion for GQA, and the output lands in transformers' ``(1, total, heads,
        dim)`` layout with one copy). Queries go in blocks of about ``QUERY_BLOCK`` positions, each against the
        keys up to its own last position only, so the masked upper triangle is mostly not computed (a sequence of
        300 tokens in 3 blocks computes 2/3 of the square). A block's scores are one ``baddbmm`` onto the cached
        causal bias (the mask and the scale cost no pass of their own); the softmax runs in the input dtype (fp32
        inside the kernel) and its output is the only score-sized tensor kept for backward."""

        @staticmethod
        def forward(ctx: Any, query: Any, key: Any, value: Any, segments: Any, scale: float) -> Any:  # type: ignore[override]
            with torch.autocast(query.device.type, enabled=False):
                key, value = key.to(query.dtype), value.to(query.dtype)
                _, heads, total, dim = query.shape
                kv_heads = key.shape[1]
                groups = heads // kv_heads
                out = query.new_empty((1, total, heads, dim))
                probs_kept = []
                for s, e, ps, pn in segments:
                    n = e - s
                    q = _position_major(query[0, :, s:e], kv_heads, scale)  # (kv_heads, n * groups, dim)
                    k, v = _keys(key, s, e, ps, pn), _keys(value, s, e, ps, pn)
                    o = q.new_empty(q.shape)
                    for bs, be in _blocks(n):
                        # query positions pn + bs .. pn + be - 1 of the prefix-and-sequence, keys up to the last
                        bias = _causal_bias(pn + bs, pn + be, groups, query.dtype, query.device)
                        keys = slice(0, pn + be)
                        scores = torch.baddbmm(bias, q[:, bs * groups : be * groups], k[:, keys].transpose(1, 2))
                        probs = torch.softmax(scores, dim=-1)
                        torch.bmm(probs, v[:, keys], out=o[:, bs * groups : be * groups])
                        probs_kept.append(probs)
                    out[0, s:e] = o.view(kv_heads, n, groups, dim).transpose(0, 1).reshape(n, heads, dim)
            ctx.save_for_backward(query, key, value, *probs_kept)
            ctx.segments, ctx.scale = segments, scale
            return out

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> Any:  # type: ignore[override]
            query, key, value, *probs_kept = ctx.saved_tensors
            scale = ctx.scale
            kept = iter(probs_kept)
            with torch.autocast(query.device.type, enabled=False):
                grad_out = grad_out.to(query.dtype)
                _, heads, total, dim = query.shape
                kv_heads = key.shape[1]
                groups = heads // kv_heads
                covered = sum(e - s for s, e, _, _ in ctx.segments) == total  # else some queries have no gradient
                grad_q = (torch.empty if covered else torch.zeros)(
                    (1, total, heads, dim), dtype=query.dtype, device=query.device
                )
                # key/value gradients sum over the query blocks: accumulated in fp32 (bf16 would round once per block)
                grad_k = torch.zeros((kv_heads, total, dim), dtype=torch.float32, device=key.device)
                grad_v = torch.zeros((kv_heads, total, dim), dtype=torch.float32, device=value.device)
                exact = query.dtype == torch.float32
                for s, e, ps, pn in ctx.segments:
                    n = e - s
                    # (kv_heads, n * groups, dim), position-major like the forward's queries
                    d_o = grad_out[0, s:e].reshape(n, kv_heads, groups, dim).transpose(0, 1).reshape(kv_heads, -1, dim)
                    q = _position_major(query[0, :, s:e], kv_heads, scale)
                    k, v = _keys(key, s, e, ps, pn), _keys(value, s, e, ps, pn)
                    if pn:  # a branch: its prefix's key/value gradients are added to the prefix's afterwards
                        g_k = torch.zeros((kv_heads, pn + n, dim), dtype=torch.float32, device=key.device)
                        g_v = torch.zeros_like(g_k)
                    else:
                        g_k, g_v = grad_k[:, s:e], grad_v[:, s:e]
                    d_q = q.new_empty(q.shape)
                    for bs, be in _blocks(n):
                        probs = next(kept)
                        rows, keys = slice(bs * groups, be * groups), slice(0, pn + be)
                        if exact:
                            g_v[:, keys].baddbmm_(probs.transpose(1, 2), d_o[:, rows])
                        else:
                            g_v[:, keys] += torch.bmm(probs.transpose(1, 2), d_o[:, rows])
                        d_p = torch.bmm(d_o[:, rows], v[:, keys].transpose(1, 2))
                        d_s = torch._softmax_backward_data(d_p, probs, -1, probs.dtype)
                        torch.bmm(d_s, k[:, keys], out=d_q[:, rows])
                        if exact:
                            g_k[:, keys].baddbmm_(d_s.transpose(1, 2), q[:, rows])
                        else:
                            g_k[:, keys] += torch.bmm(d_s.transpose(1, 2), q[:, rows])
                    if pn:
                        grad_k[:, ps : ps + pn] += g_k[:, :pn]
                        grad_v[:, ps : ps + pn] += g_v[:, :pn]
                        grad_k[:, s:e] += g_k[:, pn:]
                        grad_v[:, s:e] += g_v[:, pn:]
                    d_q.mul_(scale)
                    grad_q[0, s:e] = d_q.view(kv_heads, n, groups, dim).transpose(0, 1).reshape(n, heads, dim)
            return grad_q.transpose(1, 2), grad_k[None].to(key.dtype), grad_v[None].to(value.dtype), None, None

    return PackedCausalAttention


def _keys(key: Any, start: int, end: int, prefix_start: int, prefix_length: int) -> Any:
    """``(kv_heads, n, dim)`` keys (or values) of a sequence, its shared prefix's first for a branch (a copy)."""
    import torch

    if not prefix_length:
        return key[0, :, start:end]
    return torch.cat([key[0, :, prefix_start : prefix_start + prefix_length], key[0, :, start:end]], dim=1)


def _position_major(query: Any, kv_heads: int, scale: float) -> Any:
    """``(heads, n, dim)`` queries times ``scale`` as ``(kv_heads, n * groups, dim)``: row ``p * groups + g`` is
    position p of the g-th query head sharing the key/value head (head ``kv * groups + g``, as in ``repeat_kv``)."""
    import torch

    heads, n, dim = query.shape
    groups = heads // kv_heads
    out = torch.empty((kv_heads, n, groups, dim), dtype=query.dtype, device=query.device)
    torch.mul(query.view(kv_heads, groups, n, dim).transpose(1, 2), scale, out=out)
    return out.view(kv_heads, n * groups, dim)


def packed_direct_attention(query: Any, key: Any, value: Any, segments: list[Segment], scale: float) -> Any:
    """Causal attention within each ``(start, end, prefix start, prefix length)`` segment of a packed row (see
    ``_segments``): query ``(1, heads, total, dim)``, key/value ``(1, kv_heads, total, dim)`` -> ``(1, total, heads,
    dim)``.

    On CPU, SDPA's flash kernel runs short sequences' backward slowly: measured on 2 cores in bf16 with SmolLM2's
    shapes (9 query heads, 3 key/value heads, head dim 64), forward + backward of one layer took 4.7 ms (flash) vs
    1.6 ms (direct matmuls) at L=150, 10.5 vs 5.4 ms at L=350, 18 vs 11 ms at L=512. The cost is the L x L
    probabilities kept for backward (9 x 512 x 512 bf16 = 4.7 MB per layer at L=512), hence the length cap."""
    global _FN
    if _FN is None:
        _FN = _function()
    return _FN.apply(query, key, value, segments, float(scale))


def _packed_mask(*args: Any, **kwargs: Any) -> Any:
    """No dense mask for padding-free rows (the attention splits them); the SDPA mask for padded batches."""
    from transformers.masking_utils import sdpa_mask

    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


def register() -> str:
    """Register the attention and mask functions with transformers (idempotent); return the implementation name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(NAME, packed_sdpa_attention)
        AttentionMaskInterface.register(NAME, _packed_mask)
        _registered = True
    return NAME
