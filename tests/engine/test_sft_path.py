"""The SFT path per device: CUDA takes the libraries built for it (Liger, transformers' flattening collator,
FlashAttention-2 or SDPA), CPU keeps the hand-written kernels, and Unsloth's model receives the labels so its fused
cross-entropy engages. The selection and the label hand-over are checked here without a GPU; tests/engine/test_gpu.py
checks a real CUDA run (skipped without one)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from training.engine.trainers.kernels import SftPath, select_sft_path
from training.engine.trainers.sft import _collator, _make_trainer_class

LLAMA = {"supports_position_ids": True, "supports_fused_loss": True, "supports_logits_to_keep": True}


@pytest.mark.parametrize(
    ("device", "unsloth", "liger", "flash", "expected"),
    [
        ("cpu", False, False, False, SftPath("ours", "packed", "fused")),
        ("cpu", False, True, True, SftPath("ours", "packed", "fused")),  # Liger/flash never on CPU
        ("cuda", False, True, True, SftPath("flattening", "flash_attention_2", "model", liger=True)),
        ("cuda", False, True, False, SftPath("flattening", "sdpa", "model", liger=True)),
        ("cuda", False, False, False, SftPath("flattening", "sdpa", "sparse")),
        ("cuda", True, True, True, SftPath("padded", "model", "model")),
        ("cpu", True, False, False, SftPath("padded", "model", "model")),
    ],
)
def test_each_device_gets_its_path(device: str, unsloth: bool, liger: bool, flash: bool, expected: SftPath) -> None:
    got = select_sft_path(device_type=device, use_unsloth=unsloth, liger=liger, flash_attention=flash, **LLAMA)
    assert got == expected


def test_models_without_position_ids_or_fused_support_fall_back() -> None:
    common = {"use_unsloth": False, "liger": False, "flash_attention": False}
    no_pos = {**LLAMA, "supports_position_ids": False}
    assert select_sft_path(device_type="cpu", **common, **no_pos) == SftPath("padded", "model", "full")
    assert select_sft_path(device_type="cuda", **common, **no_pos) == SftPath("padded", "sdpa", "sparse")
    no_fused = {**LLAMA, "supports_fused_loss": False}
    assert select_sft_path(device_type="cpu", **common, **no_fused) == SftPath("ours", "packed", "sparse")


def test_the_flattening_collator_marks_each_row_start() -> None:
    collate = _collator(SftPath("flattening", "sdpa", "model", liger=True), pad_token_id=0)
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]  # no row learns to predict the next row's start


class _RecordingModel(torch.nn.Module):
    """Stands in for an Unsloth (or Liger-patched) causal LM: computes its own loss from the labels it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.calls: list[dict[str, Any]] = []

    def forward(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        labels = kwargs["labels"]
        count = kwargs.get("num_items_in_batch") or int((labels[:, 1:] != -100).sum())
        return SimpleNamespace(loss=self.weight * 6.0 / float(count))


def test_in_model_loss_mode_the_model_receives_the_labels_and_the_token_count() -> None:
    compute_loss = _make_trainer_class().compute_loss
    trainer = SimpleNamespace(loss_mode="model", current_gradient_accumulation_steps=2)
    model = _RecordingModel().train()
    labels = torch.tensor([[-100, 3, 4, -100]])
    inputs = {"input_ids": torch.tensor([[1, 3, 4, 2]]), "labels": labels}
    loss = compute_loss(trainer, model, inputs, num_items_in_batch=torch.tensor(3))
    assert model.calls[-1]["labels"] is labels and int(model.calls[-1]["num_items_in_batch"]) == 3
    assert loss.item() == pytest.approx(2.0)
    # Without the accumulated count the model's mean is divided by the accumulation steps, like the other modes.
    loss = compute_loss(trainer, model, dict(inputs), num_items_in_batch=None)
    assert "num_items_in_batch" not in model.calls[-1] and loss.item() == pytest.approx(6.0 / 2 / 2)
