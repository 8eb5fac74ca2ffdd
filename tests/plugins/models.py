"""Fixtures for the Models tests: a really trained LoRA adapter on the embedded model (trained once, cached on disk
under the test artifacts folder and shared by every test and process), and fine-tuned model rows that point at it."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS
from tests.datasets_dir import DATASETS

SHARED = DATASETS

ADAPTER_VERSION = "v1"  # bump to retrain the cached adapter


def _train_adapter(out: Path) -> Path:
    from training.engine.run import run_training
    from training.engine.spec import TrainingSpec

    spec = TrainingSpec.from_dict(
        {
            "job_id": "tests-models-adapter",
            "base_model": "embedded/SmolLM2-135M-Instruct",
            "method": "sft",
            "weights": "lora",
            "data": {"train_files": [str(SHARED / "alpaca_en_demo.json")], "format": "alpaca", "limit": 8},
            "hyper": {
                "max_steps": 3,
                "max_length": 128,
                "per_device_train_batch_size": 2,
                "learning_rate": 1e-3,
                "lora_r": 8,
                "lora_alpha": 16,
                "save_steps": 100,
                "logging_steps": 1,
                "seed": 7,
            },
            "output_dir": str(out / "run"),
            "use_unsloth": "off",
        }
    )
    result = run_training(spec)
    assert result.status == "succeeded" and result.model_dir, result
    return Path(result.model_dir)


@pytest.fixture(scope="session")
def trained_adapter_dir() -> Path:
    """A LoRA adapter folder (adapter_config.json, adapter_model.safetensors, tokenizer) trained for 3 real steps."""
    root = ARTIFACTS / f"models-adapter-{ADAPTER_VERSION}"
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.parent / f".models-adapter-{ADAPTER_VERSION}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "DONE"
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            model_dir = _train_adapter(root)
            done.write_text(json.dumps({"model_dir": str(model_dir)}))
        return Path(json.loads(done.read_text())["model_dir"])


@pytest.fixture
def make_finetuned(trained_adapter_dir: Path, db: Any):
    """Factory: a FineTunedModel owned by `owner` whose stored files are the trained adapter (or `model_dir`)."""
    from models_app.artifacts import store_model_folder
    from models_app.models import FineTunedModel
    from tests.factories import FineTunedModelFactory

    def make(
        owner: Any, *, name: str = "tiny-alpaca", model_dir: Path | str | None = None, **fields: Any
    ) -> FineTunedModel:
        """`model_dir`: the folder stored as the model's files (default: the trained adapter)."""
        stored = store_model_folder(model_dir or trained_adapter_dir, f"artifacts/models/test-{owner.pk}")
        defaults: dict[str, Any] = {
            **stored,
            "metrics": {"train_loss_first": 2.5, "train_loss_last": 1.9},
            "hyperparameters": {"max_steps": 3, "learning_rate": 1e-3},
        }
        return FineTunedModelFactory(owner=owner, name=name, **{**defaults, **fields})

    return make
