"""Decoder-layer pieces with their backward written out, for the CPU training paths (SFT and packed DPO).

**RMSNorm.** Autograd runs a Llama-style RMSNorm as about eight operations forward and a dozen backward, each a
full pass over the hidden states, with fp32 copies kept for backward. On 2 CPU cores with SmolLM2's shapes (800
packed tokens, hidden 576, bf16) one norm took 2.2 ms forward + backward, and a layer has two: 130 ms of a 950 ms
step. Written out, the same arithmetic is four passes forward and six backward (``bench/train_throughput.py``
measures the step).

Applied only to the RMSNorm classes known to compute ``weight * (x * rsqrt(mean(x^2) + eps)).to(dtype)`` in fp32
(``RMSNORM_CLASSES``); anything else keeps its own forward.

**LoRA linear.** PEFT computes ``base(x) + lora_B(lora_A(x)) * scaling``: besides the three matmuls, a scaling pass
and an addition pass over the output forward, their mirror images backward, an addition of the two input gradients
and, under autocast, casts of the adapter weights as separate graph nodes. Written out, the adapter's product is
accumulated into the base output by the matmul itself (``addmm_`` with ``alpha=scaling``) and its input gradient
into the base input gradient likewise: matmuls only, no pass over the output. Used for a vanilla adapter (one active,
not merged, no dropout, no DoRA or other variant); PEFT's own forward otherwise.
"""

from __future__ import annotations

import types
from typing import Any

# transformers' RMSNorm classes that are copies of LlamaRMSNorm (same arithmetic, same attribute names).
RMSNORM_CLASSES = frozenset(
    {"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "SmolLM3RMSNorm", "Phi3RMSNorm"}
)

_FN: Any = None


def _function() -> Any:
    import torch

    class RMSNorm(torch.autograd.Function):
        """``weight * (x * r).to(x.dtype)`` with ``r = rsqrt(mean(x^2) + eps)`` computed in fp32, as LlamaRMSNorm.
        Kept for backward: ``r`` (one float per row) and the normalized rows in the input dtype."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, eps: float) -> Any:  # type: ignore[override]
            with torch.autocast(x.device.type, enabled=False):
                width = x.shape[-1]
                norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)
                r = torch.rsqrt(norm.square_().div_(width).add_(eps))
                normed = torch.empty_like(x)
                torch.mul(x, r, out=normed)  # computed in fp32, rounded once to x's dtype (as .to(input_dtype))
                out = weight * normed
            ctx.save_for_backward(x, weight, r, normed)
            return out

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> Any:  # type: ignore[override]
            x, weight, r, normed = ctx.saved_tensors
            grad_x = grad_w = None
            with torch.autocast(x.device.type, enabled=False):
                if ctx.needs_input_grad[1]:
                    grad_w = (grad_out * normed).reshape(-1, normed.shape[-1]).sum(0, dtype=torch.float32)
                    grad_w = grad_w.to(weight.dtype)
                if ctx.needs_input_grad[0]:
                    width = x.shape[-1]
                    d_normed = grad_out * weight
                    # d/dx of x * r: r * d - x * r^3 * mean(d * x)
                    dot = torch.mul(d_normed, x, out=torch.empty(x.shape, dtype=torch.float32, device=x.device))
                    coef = dot.sum(-1, keepdim=True).mul_(r.pow(3)).div_(-width)
                    acc = torch.mul(x, coef)
                    acc.addcmul_(d_normed, r)
                    grad_x = acc.to(x.dtype)
            return grad_x, grad_w, None

    return RMSNorm


def rms_norm(x: Any, weight: Any, eps: float) -> Any:
    """LlamaRMSNorm's forward, backward written out (see the module docstring)."""
    global _FN
    if _FN is None:
        _FN = _function()
    return _FN.apply(x, weight, float(eps))


def _rms_norm_forward(self: Any, hidden_states: Any) -> Any:
    return rms_norm(hidden_states, self.weight, self.variance_epsilon)


def use_fused_norms(model: Any) -> int:
    """Give every known RMSNorm module of ``model`` the written-out forward; the number switched."""
    switched = 0
    for module in model.modules():
        if type(module).__name__ in RMSNORM_CLASSES and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_rms_norm_forward, module)
            switched += 1
    return switched


_LORA_FN: Any = None


def _lora_function() -> Any:
    import torch

    class LoraLinear(torch.autograd.Function):
        """``x @ W.T (+ bias) + scaling * (x @ A.T) @ B.T`` in the compute dtype; gradients for ``x``, ``A``, ``B``
        (the base weight and bias are frozen). Kept for backward: the input, the (rows x rank) product ``x @ A.T``
        and the compute-dtype weights."""

        @staticmethod
        def forward(  # type: ignore[override]
            ctx: Any, x: Any, weight: Any, bias: Any, lora_a: Any, lora_b: Any, scaling: float, dtype: Any
        ) -> Any:
            with torch.autocast(x.device.type, enabled=False):
                rows = x.reshape(-1, x.shape[-1]).to(dtype)
                w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
                if bias is not None:
                    out = torch.addmm(bias.to(dtype), rows, w.t())
                else:
                    out = torch.mm(rows, w.t())
                mid = torch.mm(rows, a.t())
                out.addmm_(mid, b.t(), alpha=scaling)
            ctx.save_for_backward(rows, mid, w, a, b)
            ctx.scaling = scaling
            ctx.a_dtype, ctx.b_dtype = lora_a.dtype, lora_b.dtype
            ctx.x_shape, ctx.x_dtype = x.shape, x.dtype
            return out.view(*x.shape[:-1], out.shape[-1])

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> Any:  # type: ignore[override]
            rows, mid, w, a, b = ctx.saved_tensors
            grad_x = grad_a = grad_b = None
            with torch.autocast(rows.device.type, enabled=False):
                g = grad_out.reshape(-1, grad_out.shape[-1]).to(rows.dtype)
                if ctx.needs_input_grad[4]:
                    grad_b = torch.mm(g.t(), mid).mul_(ctx.scaling).to(ctx.b_dtype)
                g_mid = torch.mm(g, b).mul_(ctx.scaling)  # (rows x rank)
                if ctx.needs_input_grad[3]:
                    grad_a = torch.mm(g_mid.t(), rows).to(ctx.a_dtype)
                if ctx.needs_input_grad[0]:
                    grad_x = torch.mm(g, w)
                    grad_x.addmm_(g_mid, a)
                    grad_x = grad_x.view(ctx.x_shape).to(ctx.x_dtype)
            return grad_x, None, None, grad_a, grad_b, None, None

    return LoraLinear


def _vanilla_adapter(layer: Any) -> str | None:
    """The one active adapter of a PEFT LoRA ``Linear`` when it is plain LoRA that is in use (not merged, not
    disabled, no dropout, no DoRA or other variant), else None."""
    import torch

    if layer.disable_adapters or layer.merged:
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1:
        return None
    name = active[0]
    if name in getattr(layer, "lora_variant", {}) or layer.use_dora.get(name, False):
        return None
    if not isinstance(layer.lora_dropout[name], torch.nn.Identity) or getattr(layer, "lora_bias", {}).get(name):
        return None
    if type(layer.base_layer) is not torch.nn.Linear:
        return None
    return name


def _lora_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    name = None if (args or kwargs) else _vanilla_adapter(self)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    global _LORA_FN
    if _LORA_FN is None:
        _LORA_FN = _lora_function()
    base = self.base_layer
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    return _LORA_FN.apply(
        x,
        base.weight,
        base.bias,
        self.lora_A[name].weight,
        self.lora_B[name].weight,
        float(self.scaling[name]),
        dtype,
    )


def use_fused_lora(model: Any) -> int:
    """Give every PEFT LoRA ``Linear`` of ``model`` the written-out forward (each call falls back to PEFT's own
    when its adapter is not vanilla LoRA); the number switched."""
    try:
        from peft.tuners.lora.layer import Linear as LoraLinearLayer
    except ImportError:  # pragma: no cover - PEFT is a dependency of the engine
        return 0
    switched = 0
    for module in model.modules():
        if type(module) is LoraLinearLayer:
            module.forward = types.MethodType(_lora_forward, module)
            switched += 1
    return switched
