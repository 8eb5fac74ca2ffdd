"""SFT on the real embedded SmolLM2 and real public datasets: LoRA (Alpaca, ShareGPT), full, QLoRA, continue-training
from a finished adapter, and the Unsloth path. Few steps on small repeated subsets with a high learning rate, so the
loss falls visibly; the trained weights are checked too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from training.engine import ListCallback, TrainingResult, run_training

ROOT = Path(__file__).resolve().parents[2]


def losses(events: ListCallback) -> list[float]:
    return [m.loss for m in events.metrics]


def assert_loss_falls(events: ListCallback) -> None:
    values = losses(events)
    assert len(values) >= 4, values
    assert mean(values[-2:]) < mean(values[:2]) - 0.05, values


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, make_spec: Any, short_alpaca: Path, model_path: str) -> Any:
    out = tmp_path_factory.mktemp("lora") / "run"
    spec = make_spec(
        out,
        short_alpaca,
        hyper={"max_steps": 8, "save_steps": 4, "save_total_limit": 1},
        data={"eval_files": (str(short_alpaca),)},
        export_formats=("adapter",),
        compare_prompts=1,
    )
    events = ListCallback()
    result = run_training(spec, [events])
    return spec, result, events


def test_lora_sft_on_alpaca_lowers_train_and_eval_loss(lora_run: Any) -> None:
    _spec, result, events = lora_run
    assert result.status == "succeeded"
    assert result.final_step == result.total_steps == 8
    assert_loss_falls(events)
    m = result.metrics
    assert m["train_loss_last"] < m["train_loss_first"]
    assert m["eval_loss_after"] < m["eval_loss_before"]
    assert m["perplexity_after"] < m["perplexity_before"]
    assert m["tokens_per_s_mean"] > 0 and m["peak_memory_mb"] > 0


def test_lora_sft_emits_complete_events_in_order(lora_run: Any, check_metrics: Any) -> None:
    _spec, _result, events = lora_run
    check_metrics(events.metrics, 8)
    statuses = events.statuses
    for expected in ("preparing_data", "loading_model", "evaluating", "training", "saving", "succeeded"):
        assert expected in statuses
    assert statuses.index("loading_model") < statuses.index("training") < statuses.index("succeeded")
    evals = events.of_type("eval")
    assert [e.phase for e in evals] == ["before", "after"]
    # CPU: our padding-free collator, per-sequence attention and fused linear + cross-entropy (kernels.py).
    assert any(
        e.line == "SFT path: padding-free, collator ours, attention packed, loss fused" for e in events.of_type("log")
    )
    assert all(e.samples == 8 and e.perplexity is not None for e in evals)
    assert [e.step for e in events.of_type("checkpoint")] == [4, 8]
    for event in events.events:
        json.dumps(event.to_dict())


def test_lora_sft_saves_adapter_tokenizer_template_and_result(lora_run: Any, lora_b_norm: Any) -> None:
    spec, result, _events = lora_run
    final = Path(result.model_dir)
    assert final == Path(spec.output_dir) / "final"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (final / name).is_file(), name
    template = (final / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template
    assert lora_b_norm(final) > 0, "LoRA B starts at zero; training must have changed it"
    stored = json.loads((Path(spec.output_dir) / "result.json").read_text())
    assert stored == result.to_dict()
    assert TrainingResult.from_dict(stored).to_dict() == stored
    assert result.data["format"] == "alpaca" and result.data["train_rows"] == 8 and result.data["rows"] == 8
    assert len(result.data["sha256"]) == 64
    assert {"torch", "transformers", "peft", "trl"} <= set(result.versions)
    assert result.device["type"] in ("cpu", "cuda", "mps") and result.device["unsloth"] is False
    # keep-last-1: only the newest complete checkpoint is left, and nothing half-written
    left = sorted(p.name for p in Path(spec.output_dir).iterdir())
    assert left == ["checkpoint-8", "exports", "final", "result.json"]
    assert not [p for p in left if p.endswith((".tmp", ".old")) or p.startswith(".")]


def test_lora_sft_exports_and_compares_with_the_base_model(lora_run: Any) -> None:
    spec, result, events = lora_run
    assert "exporting" in events.statuses
    (artifact,) = result.artifacts
    assert "error" not in artifact, artifact
    assert artifact["kind"] == "adapter" and Path(artifact["path"]).exists()
    assert Path(artifact["path"]).is_relative_to(Path(spec.output_dir) / "exports")
    comparison = result.comparison
    assert comparison is not None and comparison["summary"]["prompts"] == 1
    row = comparison["prompts"][0]
    assert row["base"] and row["finetuned"] and row["reference"]
    assert comparison["summary"]["finetuned_loss"] < comparison["summary"]["base_loss"]
    assert (Path(result.model_dir) / "README.md").is_file()  # the model card


def test_continue_training_from_a_finished_adapter(
    tmp_path: Path, lora_run: Any, make_spec: Any, short_alpaca: Path, lora_b_norm: Any
) -> None:
    _spec, first, first_events = lora_run
    spec = make_spec(
        tmp_path / "more", short_alpaca, init_from=first.model_dir, hyper={"max_steps": 2, "learning_rate": 1e-5}
    )
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded" and result.final_step == 2
    # It starts where the first run ended, not from the base model.
    assert losses(events)[0] < losses(first_events)[0] - 0.3
    assert lora_b_norm(result.model_dir) > 0


def test_lora_sft_on_multi_turn_sharegpt(
    tmp_path: Path, make_spec: Any, short_sharegpt: Path, check_metrics: Any, lora_b_norm: Any
) -> None:
    spec = make_spec(tmp_path / "run", short_sharegpt, hyper={"max_steps": 5})
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded" and result.data["format"] == "sharegpt"
    check_metrics(events.metrics, 5)
    assert_loss_falls(events)
    assert lora_b_norm(result.model_dir) > 0


def test_full_sft_changes_the_weights(
    tmp_path: Path, make_spec: Any, short_alpaca: Path, model_path: str, check_metrics: Any
) -> None:
    from safetensors import safe_open

    spec = make_spec(tmp_path / "run", short_alpaca, weights="full", hyper={"max_steps": 4, "learning_rate": 5e-5})
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded"
    check_metrics(events.metrics, 4)
    assert losses(events)[-1] < losses(events)[0]
    final = Path(result.model_dir)
    assert (final / "config.json").is_file() and (final / "model.safetensors").is_file()
    assert not (final / "adapter_config.json").exists()
    config = json.loads((final / "config.json").read_text())
    assert config.get("_attn_implementation") in (None, "sdpa")
    key = "model.layers.0.self_attn.q_proj.weight"
    with (
        safe_open(str(final / "model.safetensors"), "pt") as new,
        safe_open(os.path.join(model_path, "model.safetensors"), "pt") as base,
    ):
        assert not new.get_tensor(key).equal(base.get_tensor(key))

    # Continue training from the finished full model (a LoRA on top of it this time).
    more = ListCallback()
    again = run_training(
        make_spec(
            tmp_path / "more", short_alpaca, init_from=str(final), hyper={"max_steps": 1, "learning_rate": 1e-5}
        ),
        [more],
    )
    assert again.status == "succeeded" and more.metrics[0].loss < losses(events)[0]


def test_qlora_sft_trains_the_adapter_on_a_4bit_model(
    tmp_path: Path, make_spec: Any, short_alpaca: Path, check_metrics: Any, lora_b_norm: Any
) -> None:
    pytest.importorskip("bitsandbytes")
    spec = make_spec(
        tmp_path / "run",
        short_alpaca,
        weights="qlora",
        hyper={"max_steps": 6, "max_eval_samples": 2},
        data={"eval_files": (str(short_alpaca),)},
    )
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded"
    check_metrics(events.metrics, 6)
    assert_loss_falls(events)
    assert (Path(result.model_dir) / "adapter_model.safetensors").is_file()
    assert lora_b_norm(result.model_dir) > 0
    # Evaluating the 4-bit model before training must not break its gradients (the bitsandbytes CPU repacking trap).
    assert [e.phase for e in events.of_type("eval")] == ["before", "after"]
    assert all(m.grad_norm > 0.05 for m in events.metrics)
    assert result.metrics["eval_loss_after"] < result.metrics["eval_loss_before"]


def test_unsloth_path_gives_the_same_outputs(tmp_path: Path, short_alpaca: Path, model_path: str) -> None:
    """Unsloth patches transformers globally, so it runs in its own process (through the CLI)."""
    pytest.importorskip("unsloth", reason="unsloth is not installed")
    spec = {
        "job_id": "unsloth",
        "base_model": "embedded/SmolLM2-135M-Instruct",
        "method": "sft",
        "weights": "lora",
        "data": {"train_files": [str(short_alpaca)]},
        "output_dir": str(tmp_path / "run"),
        "use_unsloth": "on",
        "hyper": {
            "max_steps": 2,
            "max_length": 128,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-3,
            "validation_split": 0.0,
            "save_steps": 0,
        },
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "training.engine.cli", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    result = lines[-1]
    assert result["type"] == "result" and result["status"] == "succeeded" and result["device"]["unsloth"] is True
    # The labels go to Unsloth's model (its fused cross-entropy), not popped to build the full logits ourselves.
    assert any(e["type"] == "log" and "SFT path: padded" in e["line"] and "loss model" in e["line"] for e in lines)
    metrics = [e for e in lines if e["type"] == "metric"]
    assert [e["step"] for e in metrics] == [1, 2] and all(e["loss"] > 0 and e["tokens_per_s"] > 0 for e in metrics)
    final = Path(result["model_dir"])
    assert (final / "adapter_model.safetensors").is_file() and (final / "adapter_config.json").is_file()


def test_raw_text_continued_pretraining_trains_packed_blocks(
    tmp_path: Path, make_spec: Any, short_alpaca: Path, model_path: str
) -> None:
    """Continued pre-training: 8 short documents packed into 32-token blocks (no row cut), trained until the loss
    falls; the data report and the status line say how many blocks the data made."""
    rows = json.loads(short_alpaca.read_text())
    docs = tmp_path / "web.jsonl"
    docs.write_text("".join(json.dumps({"text": f"{r['instruction']} {r['output']}"}) + "\n" for r in rows))
    spec = make_spec(
        tmp_path / "run", docs, hyper={"max_steps": 6, "max_length": 32, "per_device_train_batch_size": 2}
    )
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded", result.error
    data = result.data
    assert data["format"] == "text" and data["truncated"] == 0 and data["packed_blocks"] == data["train_rows"] >= 2
    assert data["total_tokens"] > 32 * (data["packed_blocks"] - 1)  # every block but the last is full
    assert any("packed into" in e.message for e in events.of_type("status"))
    assert_loss_falls(events)
