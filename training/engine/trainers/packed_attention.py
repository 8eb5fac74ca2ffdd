"""Attention for padding-free batches: one causal SDPA call per packed sequence.

transformers' own answer to packed ``position_ids`` under SDPA is a dense block-diagonal mask over the whole packed
row: attention then costs (sum of lengths)^2 instead of the sum of length^2, and the masked SDPA path cannot use the
causal fast kernel. Here the mask is skipped (``attention_mask is None``) and each sequence (found from the restarts
of ``position_ids``) runs ``scaled_dot_product_attention(is_causal=True)`` on its own slice. Any other input (padded
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
    outs = [
        F.scaled_dot_product_attention(
            query[:, :, s:e],
            key[:, :, s:e],
            value[:, :, s:e],
            is_causal=True,
            dropout_p=p,
            scale=scaling,
            enable_gqa=gqa,
        )
        for s, e in segments
    ]
    out = torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


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
