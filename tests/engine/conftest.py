"""Engine fixtures: the embedded model (converted once per machine), the shared public datasets and small derived
subsets (written into temp folders; the shared files are never modified), and a spec builder."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("FINETUNE_DATASETS_DIR", ROOT.parent / "shared" / "datasets"))
ALPACA = DATASETS / "alpaca_en_demo.json"
SHAREGPT = DATASETS / "sharegpt_conversations.json"
HH_RLHF = DATASETS / "hh_rlhf_harmless_test.jsonl.gz"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared dataset {path} is not available")
    return path


@pytest.fixture(scope="session")
def model_path() -> str:
    """The embedded SmolLM2-135M-Instruct folder (converted from its GGUF on first use)."""
    from training.engine.embedded import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="session")
def alpaca_file() -> Path:
    return _require(ALPACA)


@pytest.fixture(scope="session")
def sharegpt_file() -> Path:
    return _require(SHAREGPT)


@pytest.fixture(scope="session")
def hh_file() -> Path:
    return _require(HH_RLHF)


@pytest.fixture(scope="session")
def short_alpaca(tmp_path_factory: pytest.TempPathFactory, alpaca_file: Path) -> Path:
    """The 8 shortest Alpaca rows (fast steps; repeated epochs make the loss fall visibly)."""
    rows = json.loads(alpaca_file.read_text())
    rows = sorted(rows, key=lambda r: len(r["instruction"]) + len(r["input"]) + len(r["output"]))[:8]
    path = tmp_path_factory.mktemp("data") / "alpaca_short.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="session")
def short_sharegpt(tmp_path_factory: pytest.TempPathFactory, sharegpt_file: Path) -> Path:
    """8 short multi-turn ShareGPT conversations (at least two human/gpt exchanges each)."""
    rows = json.loads(sharegpt_file.read_text())
    multi = [r for r in rows if len(r["conversations"]) >= 4]
    multi.sort(key=lambda r: sum(len(t["value"]) for t in r["conversations"]))
    path = tmp_path_factory.mktemp("data") / "sharegpt_short.json"
    path.write_text(json.dumps(multi[:8]))
    return path


@pytest.fixture(scope="session")
def short_hh(tmp_path_factory: pytest.TempPathFactory, hh_file: Path) -> Path:
    """The 8 shortest HH-RLHF preference pairs, gzipped JSON Lines like the original."""
    with gzip.open(hh_file, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    rows = [r for r in rows if r["chosen"].count("\n\nHuman:") == 1 and r["chosen"] != r["rejected"]]
    rows.sort(key=lambda r: len(r["chosen"]) + len(r["rejected"]))
    path = tmp_path_factory.mktemp("data") / "hh_short.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows[:8]:
            fh.write(json.dumps(row) + "\n")
    return path


def _make_spec(output_dir: Path | str, train_file: Path | str, **overrides: Any) -> Any:
    """A small, fast spec (embedded model, max_length 128, no eval, no intermediate checkpoints, no Unsloth)."""
    from training.engine import DataSpec, HyperParams, TrainingSpec

    hyper = {
        "max_steps": 4,
        "max_length": 128,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "validation_split": 0.0,
        "save_steps": 0,
        "lora_r": 8,
        "lora_alpha": 16,
    }
    hyper.update(overrides.pop("hyper", {}))
    data = {"train_files": (str(train_file),)}
    data.update(overrides.pop("data", {}))
    values: dict[str, Any] = {
        "job_id": "test",
        "base_model": "embedded/SmolLM2-135M-Instruct",
        "data": DataSpec(**data),
        "output_dir": str(output_dir),
        "method": "sft",
        "weights": "lora",
        "hyper": HyperParams(**hyper),
        "use_unsloth": "off",
    }
    values.update(overrides)
    return TrainingSpec(**values)


def _assert_metric_events_sane(metrics: list[Any], total_steps: int) -> None:
    """Every metric event carries every field with plausible values."""
    assert metrics, "no metric events"
    steps = [m.step for m in metrics]
    assert steps == sorted(steps) and steps[-1] == total_steps
    for m in metrics:
        d = m.to_dict()
        assert d["type"] == "metric"
        for key in (
            "step",
            "total_steps",
            "epoch",
            "loss",
            "learning_rate",
            "grad_norm",
            "tokens_per_s",
            "samples_per_s",
            "tokens",
            "memory_mb",
            "memory",
            "elapsed_s",
            "eta_s",
            "time",
        ):
            assert key in d, key
        assert m.total_steps == total_steps
        assert m.loss is not None and 0 < m.loss < 20
        assert m.learning_rate is not None and m.learning_rate >= 0
        assert m.grad_norm is not None and m.grad_norm >= 0
        assert m.tokens > 0 and m.tokens_per_s > 0 and m.samples_per_s > 0
        assert m.memory_mb > 0 and m.memory["rss_mb"] > 0
        assert m.elapsed_s > 0 and m.eta_s is not None and m.eta_s >= 0
        assert m.epoch > 0 and m.time > 1.6e9
        json.dumps(d)


def _lora_b_norm(adapter_dir: Path | str) -> float:
    """Sum of |lora_B| over the adapter: 0 at initialisation, > 0 once trained."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    b = [t for k, t in tensors.items() if "lora_B" in k]
    assert b, "no lora_B tensors in the adapter"
    return float(sum(t.abs().sum() for t in b))


@pytest.fixture(scope="session")
def make_spec() -> Any:
    """``make_spec(output_dir, train_file, hyper={...}, data={...}, **spec_fields)`` -> a small fast TrainingSpec."""
    return _make_spec


@pytest.fixture(scope="session")
def check_metrics() -> Any:
    """``check_metrics(metric_events, total_steps)``: every metric event has every field with sane values."""
    return _assert_metric_events_sane


@pytest.fixture(scope="session")
def lora_b_norm() -> Any:
    """``lora_b_norm(adapter_dir)``: sum of |lora_B| (0 untrained)."""
    return _lora_b_norm
