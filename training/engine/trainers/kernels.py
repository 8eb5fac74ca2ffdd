"""Which batching, attention and loss an SFT run uses: the libraries built for CUDA there, our own kernels on CPU.

- **CUDA, no Unsloth**: Liger kernels when ``liger-kernel`` is installed (``TrainingArguments(use_liger_kernel=True)``:
  fused linear cross-entropy, RMSNorm, RoPE, SwiGLU; the model gets the labels, so Liger's loss never builds the full
  logits), padding-free batches from transformers' ``DataCollatorWithFlattening`` (``position_ids`` mark where each
  row starts), and FlashAttention-2's variable-length kernel when ``flash-attn`` is installed, else SDPA (which
  transformers also runs on flattened rows). Without Liger the loss only projects the trained positions
  (``logits_to_keep``), as on CPU.
- **Unsloth** (CUDA, or its CPU fallback): the model gets the labels, so Unsloth's fused cross-entropy engages;
  rows are padded (Unsloth patches the attention itself).
- **CPU / MPS**: the hand-written kernels measured faster there (``bench/train_throughput.py``): our padding-free
  collator with per-sequence attention (``packed_attention.py``) and the chunked fused linear + cross-entropy
  (``losses.py``); ``sparse`` (``logits_to_keep``) or ``full`` logits for models that lack what those need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Collator = Literal["ours", "flattening", "padded"]
Attention = Literal["packed", "flash_attention_2", "sdpa", "model"]
LossMode = Literal["fused", "sparse", "full", "model"]


@dataclass(frozen=True)
class SftPath:
    """How an SFT trainer batches rows, attends and computes its loss."""

    collator: Collator  # ours: PaddingFreeCollator; flattening: DataCollatorWithFlattening; padded: PaddedCollator
    attention: Attention  # packed: ours (CPU); flash_attention_2 / sdpa: set on the model; model: left as loaded
    loss: LossMode  # fused / sparse / full: computed by PackedSFTTrainer; model: the labels go to the model
    liger: bool = False  # TrainingArguments(use_liger_kernel=True)

    @property
    def padding_free(self) -> bool:
        return self.collator != "padded"

    def describe(self) -> str:
        """One line for the job log."""
        parts = [
            "padding-free" if self.padding_free else "padded",
            f"collator {self.collator}",
            f"attention {self.attention}",
            f"loss {self.loss}",
        ]
        if self.liger:
            parts.append("Liger kernels")
        return ", ".join(parts)


def liger_available() -> bool:
    """True when ``liger-kernel`` is importable (it needs Triton, so CUDA machines only)."""
    try:
        from transformers.utils import is_liger_kernel_available

        return bool(is_liger_kernel_available())
    except ImportError:
        return False


def flash_attention_available() -> bool:
    """True when FlashAttention-2 (``flash-attn``) is installed and usable on this GPU."""
    try:
        from transformers.utils import is_flash_attn_2_available

        return bool(is_flash_attn_2_available())
    except ImportError:
        return False


def select_sft_path(
    *,
    device_type: str,
    use_unsloth: bool,
    supports_position_ids: bool,
    supports_fused_loss: bool,
    supports_logits_to_keep: bool,
    liger: bool,
    flash_attention: bool,
) -> SftPath:
    """The SFT path for a device and model (see the module docstring)."""
    if use_unsloth:
        return SftPath(collator="padded", attention="model", loss="model")
    if device_type == "cuda":
        attention: Attention = "flash_attention_2" if flash_attention else "sdpa"
        collator: Collator = "flattening" if supports_position_ids else "padded"
        if liger:
            return SftPath(collator=collator, attention=attention, loss="model", liger=True)
        return SftPath(collator=collator, attention=attention, loss="sparse" if supports_logits_to_keep else "full")
    if not supports_position_ids:
        return SftPath(collator="padded", attention="model", loss="full")
    if supports_fused_loss:
        return SftPath(collator="ours", attention="packed", loss="fused")
    return SftPath(collator="ours", attention="packed", loss="sparse" if supports_logits_to_keep else "full")
