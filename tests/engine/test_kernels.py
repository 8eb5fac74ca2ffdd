"""The engine's hand-written training kernels against PyTorch's reference operations (no model needed).

- ``linear_cross_entropy`` (chunked linear + cross-entropy, gradients computed in forward) vs ``F.cross_entropy``
  on full logits: loss and gradients for the hidden states and the output weight, in fp32 and bf16, across chunks.
- The written-out RMSNorm and LoRA linear (``fused_layers``) vs transformers' LlamaRMSNorm and PEFT's LoRA forward, and
  the largest-first sampler of the SFT path.
- The packed attention (one causal attention per sequence of a padding-free row, the direct two-matmul path on CPU
  for short sequences) vs ``F.scaled_dot_product_attention`` with a block-diagonal causal mask.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from training.engine.trainers import losses
from training.engine.trainers.packed_attention import packed_direct_attention, packed_sdpa_attention


def _reference_loss(hidden: Any, weight: Any, targets: Any, denom: float) -> Any:
    logits = hidden.float() @ weight.float().t()
    return F.cross_entropy(logits, targets, reduction="sum") / denom


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_linear_cross_entropy_matches_full_logits(monkeypatch: pytest.MonkeyPatch, dtype: Any, tol: float) -> None:
    monkeypatch.setattr(losses, "_CHUNK_ELEMENTS", 7 * 300)  # 7 rows per chunk: several chunks and a ragged last one
    monkeypatch.setattr(losses, "VOCAB_MAJOR_ROWS", 7)  # the same for fp32's [vocab, rows] chunks
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


@pytest.mark.parametrize("length", [1, 9, 130, 300])
def test_direct_causal_attention_matches_sdpa(length: int) -> None:
    torch.manual_seed(length)
    # SmolLM2's layout: 9 query heads sharing 3 key/value heads, queries non-contiguous as after transpose(1, 2)
    query = torch.randn(1, length, 9, 16).transpose(1, 2).requires_grad_()
    key = torch.randn(1, 3, length, 16, requires_grad=True)
    value = torch.randn(1, 3, length, 16, requires_grad=True)
    ours = packed_direct_attention(query, key, value, [(0, length, 0, 0)], 0.25).transpose(1, 2)
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


@pytest.mark.parametrize("direct_max", ["512", "12", "0"])
def test_a_branch_shares_its_roots_prefix_and_nothing_else(monkeypatch: pytest.MonkeyPatch, direct_max: str) -> None:
    """DPO's pair layout, prompt + chosen rest then the rejected rest with positions falling back to the prompt's
    length, twice: each rest attends to its own prompt and itself only, with the direct kernel, SDPA's (direct path
    off) and a mix; outputs and the query/key/value gradients equal a dense mask's."""
    monkeypatch.setenv("FINETUNE_CPU_DIRECT_ATTENTION_MAX", direct_max)
    torch.manual_seed(4)
    # (prompt, chosen rest, rejected rest) per pair
    pairs = [(6, 5, 3), (4, 9, 7)]
    pieces, allowed, start = [], [], 0
    for prompt, chosen, rejected in pairs:
        pieces += [torch.arange(prompt + chosen), torch.arange(prompt, prompt + rejected)]
        root = list(range(start, start + prompt + chosen))
        allowed += [root[: i + 1] for i in range(len(root))]
        branch = start + prompt + chosen
        allowed += [root[:prompt] + list(range(branch, branch + j + 1)) for j in range(rejected)]
        start += prompt + chosen + rejected
    total = start
    position_ids = torch.cat(pieces)[None]
    mask = torch.zeros(total, total, dtype=torch.bool)
    for i, keys in enumerate(allowed):
        mask[i, keys] = True
    query = torch.randn(1, 9, total, 16, requires_grad=True)
    key = torch.randn(1, 3, total, 16, requires_grad=True)
    value = torch.randn(1, 3, total, 16, requires_grad=True)

    out, _ = packed_sdpa_attention(
        _Attention().train(), query, key, value, None, scaling=0.25, position_ids=position_ids
    )
    ref = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=0.25, enable_gqa=True).transpose(
        1, 2
    )
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(ref)
    mine = torch.autograd.grad(out, (query, key, value), grad)
    theirs = torch.autograd.grad(ref, (query, key, value), grad)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_positions_that_do_not_describe_sequences_are_not_split() -> None:
    from training.engine.trainers.packed_attention import _segments

    assert _segments(torch.tensor([[0, 1, 2, 0, 1]]), 5) == [(0, 3, 0, 0), (3, 5, 0, 0)]
    assert _segments(torch.tensor([[0, 1, 2, 3, 2, 3]]), 6) == [(0, 4, 0, 0), (4, 6, 0, 2)]
    assert _segments(torch.tensor([[0, 1, 5, 6]]), 4) is None  # a jump forward
    assert _segments(torch.tensor([[1, 2, 3]]), 3) is None  # no start at 0
    assert _segments(torch.tensor([[0, 1, 2, 3, 2, 3, 1]]), 7) == [(0, 4, 0, 0), (4, 6, 0, 2), (6, 7, 0, 1)]
    assert _segments(torch.tensor([[0, 1, 1, 2, 3, 4, 5, 4]]), 8) is None  # a prefix longer than the root


# --- written-out RMSNorm and LoRA linear (fused_layers) ----------------------------------------------------------


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_written_out_rms_norm_matches_llama(dtype: Any, tol: float) -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from training.engine.trainers.fused_layers import use_fused_norms

    torch.manual_seed(5)
    ref = LlamaRMSNorm(48, eps=1e-5).to(dtype)
    ref.weight.data = (torch.rand(48) + 0.5).to(dtype)
    ours = LlamaRMSNorm(48, eps=1e-5).to(dtype)
    ours.weight.data = ref.weight.data.clone()
    assert use_fused_norms(ours) == 1
    x = (torch.randn(2, 7, 48) * 3).to(dtype)
    grad = torch.randn(2, 7, 48).to(dtype)
    results = []
    for module in (ref, ours):
        xi = x.clone().requires_grad_()
        out = module(xi)
        out.backward(grad)
        results.append((out.float(), xi.grad.float(), module.weight.grad.float()))
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, atol=tol, rtol=tol), (a - b).abs().max()


class _TwoLinears(torch.nn.Module):
    def __init__(self, bias: bool) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(24, 40, bias=bias)
        self.out = torch.nn.Linear(40, 24, bias=False)

    def forward(self, x: Any) -> Any:
        return self.out(torch.nn.functional.silu(self.proj(x)))


def _lora_model(bias: bool, dropout: float = 0.0) -> Any:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(7)
    model = get_peft_model(
        _TwoLinears(bias), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["proj", "out"])
    )
    for name, param in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero, which would leave A's gradient zero
            param.data.normal_(0, 0.2)
    return model


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
def test_written_out_lora_linear_matches_peft(bias: bool, autocast: bool) -> None:
    """Same output and the same gradients for the input and every adapter weight as PEFT's forward, in fp32 and
    under bf16 autocast (the CPU training path), with and without a base bias."""
    from training.engine.trainers.fused_layers import use_fused_lora

    tol = 3e-2 if autocast else 1e-5
    x = torch.randn(3, 5, 24)
    results = []
    for fused in (False, True):
        model = _lora_model(bias)
        if fused:
            assert use_fused_lora(model) == 2
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(xi)
        out.float().square().sum().backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad}
        assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
        results.append((out.float(), xi.grad.float(), grads))
    (out_a, gx_a, ga), (out_b, gx_b, gb) = results
    assert torch.allclose(out_a, out_b, atol=tol, rtol=tol)
    assert torch.allclose(gx_a, gx_b, atol=tol, rtol=tol)
    assert ga.keys() == gb.keys() and len(ga) == 4
    for name in ga:
        assert gb[name].abs().sum() > 0
        assert torch.allclose(ga[name], gb[name], atol=tol * 10, rtol=tol), name


def test_written_out_lora_falls_back_to_peft_where_it_does_not_apply() -> None:
    """A disabled adapter (DPO's reference pass) runs the base layer only; dropout keeps PEFT's own forward."""
    from training.engine.trainers.fused_layers import _vanilla_adapter, use_fused_lora

    model = _lora_model(bias=False)
    use_fused_lora(model)
    x = torch.randn(2, 24)
    base = model.get_base_model()
    plain = base.out.base_layer(torch.nn.functional.silu(base.proj.base_layer(x)))
    with model.disable_adapter():
        assert torch.allclose(model(x), plain)
    assert not torch.allclose(model(x), plain)
    assert _vanilla_adapter(base.proj) == "default"
    dropped = _lora_model(bias=False, dropout=0.1)
    use_fused_lora(dropped)
    assert _vanilla_adapter(dropped.get_base_model().proj) is None


def test_largest_first_sampler_starts_with_the_largest_global_batch() -> None:
    from training.engine.trainers.sft import LargestFirstSampler

    lengths = [10, 200, 30, 40, 50, 60, 70, 5, 999]  # 9 rows in global batches of 4: the last batch is partial
    sampler = LargestFirstSampler(lengths, group=4, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(9))
    full = [order[i : i + 4] for i in (0, 4)]
    assert sum(lengths[j] for j in full[0]) == max(sum(lengths[j] for j in b) for b in full)
    assert order == list(LargestFirstSampler(lengths, group=4, seed=3))  # the same order for the same seed (resume)
    sampler.set_epoch(1)
    assert sorted(sampler) == list(range(9))
