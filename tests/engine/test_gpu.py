"""CUDA-only branches: GPU memory metrics, bf16/fp16 selection, QLoRA with checkpointing, and the Unsloth fast path
(which ``use_unsloth="auto"`` picks on CUDA). Skipped cleanly without a CUDA GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

ROOT = Path(__file__).resolve().parents[2]


def test_cuda_device_and_precision_are_detected() -> None:
    from training.engine.device import detect_device, memory_snapshot

    info = detect_device()
    assert info.type == "cuda"
    assert info.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    headline, detail = memory_snapshot("cuda")
    assert {"cuda_allocated_mb", "cuda_reserved_mb", "rss_mb"} <= set(detail) and headline >= 0


def test_lora_sft_on_cuda_reports_gpu_memory(
    tmp_path: Path, make_spec: Any, short_alpaca: Path, check_metrics: Any, lora_b_norm: Any
) -> None:
    from training.engine import ListCallback, run_training

    events = ListCallback()
    result = run_training(make_spec(tmp_path / "run", short_alpaca, hyper={"max_steps": 4}), [events])
    assert result.status == "succeeded" and result.device["type"] == "cuda"
    check_metrics(events.metrics, 4)
    for m in events.metrics:
        assert m.memory["cuda_allocated_mb"] > 0 and m.memory["cuda_reserved_mb"] >= m.memory["cuda_allocated_mb"]
        assert m.memory_mb == m.memory["cuda_allocated_mb"]
    assert lora_b_norm(result.model_dir) > 0


def test_qlora_on_cuda_uses_gradient_checkpointing(tmp_path: Path, make_spec: Any, short_alpaca: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from training.engine import ListCallback, run_training

    events = ListCallback()
    result = run_training(make_spec(tmp_path / "run", short_alpaca, weights="qlora", hyper={"max_steps": 3}), [events])
    assert result.status == "succeeded" and result.metrics["gradient_checkpointing"] == 1


def test_unsloth_auto_is_used_on_cuda(tmp_path: Path, short_alpaca: Path) -> None:
    pytest.importorskip("unsloth", reason="unsloth is not installed")
    spec = {
        "job_id": "unsloth-gpu",
        "base_model": "embedded/SmolLM2-135M-Instruct",
        "method": "sft",
        "weights": "lora",
        "data": {"train_files": [str(short_alpaca)]},
        "output_dir": str(tmp_path / "run"),
        "use_unsloth": "auto",
        "hyper": {"max_steps": 3, "max_length": 128, "learning_rate": 1e-3, "validation_split": 0.0, "save_steps": 0},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "training.engine.cli", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    result = lines[-1]
    assert result["status"] == "succeeded" and result["device"]["unsloth"] is True
    metrics = [e for e in lines if e["type"] == "metric"]
    assert all("cuda_allocated_mb" in e["memory"] for e in metrics)
    assert Path(result["model_dir"], "adapter_model.safetensors").is_file()


def test_lora_sft_on_cuda_takes_the_library_kernels(tmp_path: Path, make_spec: Any, short_alpaca: Path) -> None:
    """Without Unsloth, CUDA batches padding-free with transformers' flattening collator, attends with
    FlashAttention-2 when installed (else SDPA) and uses Liger's kernels when installed; the loss falls."""
    from training.engine import ListCallback, run_training
    from training.engine.trainers.kernels import flash_attention_available, liger_available

    events = ListCallback()
    spec = make_spec(tmp_path / "run", short_alpaca, hyper={"max_steps": 6}, use_unsloth="off")
    result = run_training(spec, [events])
    assert result.status == "succeeded", result.error
    attention = "flash_attention_2" if flash_attention_available() else "sdpa"
    loss = "model" if liger_available() else "sparse"
    expected = f"SFT path: padding-free, collator flattening, attention {attention}, loss {loss}"
    assert any(e.line.startswith(expected) for e in events.of_type("log")), [e.line for e in events.of_type("log")]
    losses = [m.loss for m in events.metrics]
    assert sum(losses[-2:]) < sum(losses[:2])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_full_fine_tuning_on_two_gpus_is_sharded_with_fsdp_and_resumes(tmp_path: Path, short_alpaca: Path) -> None:
    """sharding auto = FSDP2 for full weights: both ranks train, rank 0 writes a gathered checkpoint and final model,
    and the run resumes from the checkpoint with --resume."""
    spec = {
        "job_id": "fsdp",
        "base_model": "embedded/SmolLM2-135M-Instruct",
        "method": "sft",
        "weights": "full",
        "use_unsloth": "off",
        "data": {"train_files": [str(short_alpaca)]},
        "output_dir": str(tmp_path / "out"),
        "hyper": {"max_steps": 4, "save_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-5},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))

    def cli(*extra: str) -> list[dict[str, Any]]:
        cmd = [sys.executable, "-m", "training.engine.cli", str(path), "--nproc", "2", *extra]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    events = cli()
    assert any("the model sharded (FSDP2)" in e.get("message", "") for e in events if e["type"] == "log")
    assert [e["step"] for e in events if e["type"] == "metric"] == [1, 2, 3, 4]
    assert (tmp_path / "out" / "checkpoint-2" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()
    resumed = cli("--max-steps", "6", "--resume")
    result = [e for e in resumed if e["type"] == "result"][0]
    assert result["status"] == "succeeded" and result["final_step"] == 6
