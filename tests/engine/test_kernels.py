"""The engine's hand-written training kernels against PyTorch's reference operations (no model needed).

- ``linear_cross_entropy`` (chunked linear + cross-entropy, gradients computed in forward) vs ``F.cross_entropy``
  on full logits: loss and gradients for the hidden states and the output weight, in fp32 and bf16, across chunks.
- The packed attention (one causal attention per sequence of a padding-free row, the direct two-matmul path on CPU
  for short sequences) vs ``F.scaled_dot_product_attention`` with a block-diagonal causal mask.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from training.engine.trainers import losses
from training.engine.trainers.packed_attention import _direct_causal_attention, packed_sdpa_attention


def _reference_loss(hidden: Any, weight: Any, targets: Any, denom: float) -> Any:
    logits = hidden.float() @ weight.float().t()
    return F.cross_entropy(logits, targets, reduction="sum") / denom


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_linear_cross_entropy_matches_full_logits(monkeypatch: pytest.MonkeyPatch, dtype: Any, tol: float) -> None:
    monkeypatch.setattr(losses, "_CHUNK_ELEMENTS", 7 * 300)  # 7 rows per chunk: several chunks and a ragged last one
    torch.manual_seed(0)
    rows, hidden_size, vocab = 33, 24, 300
    hidden = (torch.randn(rows, hidden_size) * 0.5).to(dtype).requires_grad_()
    weight = (torch.randn(vocab, hidden_size) * 0.3).to(dtype).requires_grad_()
    targets = torch.randint(0, vocab, (rows,))
    denom = 41.0  # a gradient-accumulation denominator, not the row count

    loss = losses.linear_cross_entropy(hidden, weight, targets, denom)
    (loss * 3.0).backward()  # a non-unit upstream gradient must scale the stored gradients
    ref_h = hidden.detach().clone().requires_grad_()
    ref_w = weight.detach().clone().requires_grad_()
    ref = _reference_loss(ref_h, ref_w, targets, denom)
    (ref * 3.0).backward()

    assert loss.dtype == torch.float32
    assert abs(loss.item() - ref.item()) <= tol * max(1.0, abs(ref.item()))
    assert hidden.grad is not None and weight.grad is not None
    assert hidden.grad.dtype == dtype and weight.grad.dtype == dtype
    assert torch.allclose(hidden.grad.float(), ref_h.grad.float(), atol=tol, rtol=tol * 5)
    assert torch.allclose(weight.grad.float(), ref_w.grad.float(), atol=tol, rtol=tol * 5)


def test_linear_cross_entropy_with_a_frozen_head_and_no_rows() -> None:
    torch.manual_seed(1)
    weight = torch.randn(50, 8)  # frozen: no weight gradient is computed
    hidden = torch.randn(5, 8, requires_grad=True)
    targets = torch.randint(0, 50, (5,))
    loss = losses.linear_cross_entropy(hidden, weight, targets, 5.0)
    loss.backward()
    assert weight.grad is None
    assert torch.isfinite(hidden.grad).all()
    empty = torch.zeros((0, 8), requires_grad=True)
    zero = losses.linear_cross_entropy(empty, weight, targets[:0], 1.0)
    assert zero.item() == 0.0


@pytest.mark.parametrize("length", [1, 9, 130])
def test_direct_causal_attention_matches_sdpa(length: int) -> None:
    torch.manual_seed(length)
    # SmolLM2's layout: 9 query heads sharing 3 key/value heads, queries non-contiguous as after transpose(1, 2)
    query = torch.randn(1, length, 9, 16).transpose(1, 2).requires_grad_()
    key = torch.randn(1, 3, length, 16, requires_grad=True)
    value = torch.randn(1, 3, length, 16, requires_grad=True)
    ours = _direct_causal_attention(query, key, value, 0.25)
    ref = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=0.25, enable_gqa=True)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5)
    grad = torch.randn_like(ref)
    mine = torch.autograd.grad(ours, (query, key, value), grad)
    theirs = torch.autograd.grad(ref, (query, key, value), grad)
    for a, b in zip(mine, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-4)


class _Attention(torch.nn.Module):
    is_causal = True
    num_key_value_groups = 3


@pytest.mark.parametrize("direct_max", ["512", "0"])
def test_packed_attention_equals_a_block_diagonal_causal_mask(
    monkeypatch: pytest.MonkeyPatch, direct_max: str
) -> None:
    """Three sequences packed in one row (restarting position_ids) attend only within themselves, with the direct
    path (default) and with SDPA's kernel (direct path off)."""
    monkeypatch.setenv("FINETUNE_CPU_DIRECT_ATTENTION_MAX", direct_max)
    torch.manual_seed(3)
    lengths = [5, 11, 7]
    total = sum(lengths)
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    query = torch.randn(1, 9, total, 16)
    key = torch.randn(1, 3, total, 16)
    value = torch.randn(1, 3, total, 16)
    module = _Attention().train()
    out, _ = packed_sdpa_attention(module, query, key, value, None, scaling=0.25, position_ids=position_ids)

    mask = torch.zeros(total, total, dtype=torch.bool)
    start = 0
    for n in lengths:
        mask[start : start + n, start : start + n] = torch.ones(n, n, dtype=torch.bool).tril()
        start += n
    ref = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=0.25, enable_gqa=True)
    assert out.shape == (1, total, 9, 16)  # (batch, seq, heads, dim) as transformers' attention functions return
    assert torch.allclose(out, ref.transpose(1, 2), atol=1e-5)
