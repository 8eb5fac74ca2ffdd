"""Attention for padding-free batches: one causal SDPA call per packed sequence.

transformers' own answer to packed ``position_ids`` under SDPA is a dense block-diagonal mask over the whole packed
row: attention then costs (sum of lengths)^2 instead of the sum of length^2, and the masked SDPA path cannot use the
causal fast kernel. Here the mask is skipped (``attention_mask is None``) and each sequence (found from the restarts
of ``position_ids``) runs causal attention on its own slice: ``scaled_dot_product_attention(is_causal=True)``, or on
CPU for sequences up to ``FINETUNE_CPU_DIRECT_ATTENTION_MAX`` tokens two grouped matmuls (faster there, see
``_direct_causal_attention``). Any other input (padded
batches with a mask, generation with a KV cache) falls through to the stock SDPA implementation.
"""

from __future__ import annotations

from typing import Any

NAME = "finetune_packed_sdpa"
_registered = False


def _segments(position_ids: Any, length: int) -> list[tuple[int, int]] | None:
    row = position_ids[0] if position_ids.dim() == 2 else position_ids
    if row.shape[-1] != length or int(row[0]) != 0:
        return None
    starts = (row == 0).nonzero().flatten().tolist()
    ends = [*starts[1:], length]
    return list(zip(starts, ends, strict=True))


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
    import torch.nn.functional as F
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
    if segments is None or len(segments) == 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    import torch

    gqa = getattr(module, "num_key_value_groups", 1) > 1
    p = dropout if module.training else 0.0
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    direct_max = cpu_direct_max_length() if query.device.type == "cpu" and p == 0.0 else 0
    outs = [
        _direct_causal_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], scale)
        if e - s <= direct_max
        else F.scaled_dot_product_attention(
            query[:, :, s:e],
            key[:, :, s:e],
            value[:, :, s:e],
            is_causal=True,
            dropout_p=p,
            scale=scale,
            enable_gqa=gqa,
        )
        for s, e in segments
    ]
    out = torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


def cpu_direct_max_length() -> int:
    """Longest sequence given the direct (two-matmul) attention on CPU: ``FINETUNE_CPU_DIRECT_ATTENTION_MAX``,
    default 512; 0 turns it off. Longer sequences use SDPA's flash kernel, whose memory does not grow with L^2."""
    import os

    try:
        return max(0, int(os.environ.get("FINETUNE_CPU_DIRECT_ATTENTION_MAX", "512")))
    except ValueError:
        return 512


_MASKS: dict[tuple[int, str], Any] = {}


def _direct_causal_attention(query: Any, key: Any, value: Any, scale: float) -> Any:
    """Causal attention of one sequence as two batched matmuls with the query heads of each key/value head grouped
    into one matrix (no key/value expansion for GQA) and a softmax in the compute dtype.

    On CPU, SDPA's flash kernel runs short sequences' backward slowly: measured on 2 cores in bf16 with SmolLM2's
    shapes (9 query heads, 3 key/value heads, head dim 64), forward + backward of one layer took 4.7 ms (flash) vs
    1.6 ms (this) at L=150, 10.5 vs 5.4 ms at L=350, 18 vs 11 ms at L=512. The cost is the L x L probabilities kept
    for backward (9 x 512 x 512 bf16 = 4.7 MB per layer at L=512), hence the length cap."""
    import torch

    _, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    q = (query * scale).reshape(kv_heads, groups * length, dim)
    scores = torch.bmm(q, key.reshape(kv_heads, length, dim).transpose(1, 2))
    mask = _MASKS.get((length, str(query.device)))
    if mask is None:
        mask = torch.ones(length, length, dtype=torch.bool, device=query.device).triu(1)
        if len(_MASKS) > 64:
            _MASKS.clear()
        _MASKS[(length, str(query.device))] = mask
    scores.view(kv_heads, groups, length, length).masked_fill_(mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = torch.bmm(probs, value.reshape(kv_heads, length, dim))
    return out.view(1, heads, length, dim)


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
