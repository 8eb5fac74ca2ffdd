"""How several processes hold the model (``hyper.sharding``): DDP copies for adapters and CPU ranks, FSDP2 (or
DeepSpeed ZeRO-3) shards for full fine-tuning on GPUs, plain refusals where sharding cannot run, and the
``TrainingArguments`` each strategy becomes. The sharded runs themselves need 2+ CUDA GPUs: tests/engine/test_gpu.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.engine.checkpoints import begin_checkpoint, list_checkpoints, publish_checkpoint
from training.engine.errors import ConfigError
from training.engine.hyperparams import HyperParams
from training.engine.trainers import sharding
from training.engine.trainers.sharding import resolve_sharding, sharding_args


def test_auto_shards_full_fine_tuning_on_gpus_and_copies_adapters() -> None:
    def auto(weights: str, device: str, processes: int = 2) -> str:
        return resolve_sharding(sharding="auto", processes=processes, weights=weights, device_type=device)

    assert auto("full", "cuda") == "fsdp"
    assert auto("lora", "cuda") == "ddp" and auto("qlora", "cuda") == "ddp"
    assert auto("full", "cpu") == "ddp"  # accelerate shards only GPU ranks
    assert auto("full", "cuda", processes=1) == "single"
    assert resolve_sharding(sharding="fsdp", processes=1, weights="full", device_type="cpu") == "single"


def test_sharding_that_cannot_run_is_refused_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="needs CUDA GPUs.*sharding 'ddp'"):
        resolve_sharding(sharding="fsdp", processes=2, weights="full", device_type="cpu")
    monkeypatch.setattr(sharding, "deepspeed_available", lambda: False)
    with pytest.raises(ConfigError, match="pip install deepspeed"):
        resolve_sharding(sharding="zero3", processes=2, weights="full", device_type="cuda")
    monkeypatch.setattr(sharding, "deepspeed_available", lambda: True)
    assert resolve_sharding(sharding="zero3", processes=2, weights="full", device_type="cuda") == "zero3"
    with pytest.raises(ConfigError, match="QLoRA"):
        resolve_sharding(sharding="fsdp", processes=2, weights="qlora", device_type="cuda")
    with pytest.raises(ConfigError, match="sharding must be one of"):
        HyperParams(sharding="megatron")
    assert HyperParams().sharding == "auto"


def test_fsdp_and_zero3_become_the_trainers_own_arguments() -> None:
    from transformers import TrainingArguments

    assert sharding_args("ddp") == {} and sharding_args("single") == {}
    fsdp = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none", **sharding_args("fsdp"))
    plugin = fsdp.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert plugin["state_dict_type"] == "FULL_STATE_DICT" and plugin["reshard_after_forward"] is True
    zero = sharding_args("zero3")["deepspeed"]
    assert zero["zero_optimization"]["stage"] == 3
    assert zero["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_a_sharded_save_publishes_what_every_rank_wrote_into_one_staging_folder(tmp_path: Path) -> None:
    staging = begin_checkpoint(tmp_path, 4, create=True)  # rank 0 makes it
    assert begin_checkpoint(tmp_path, 4, create=False) == staging and staging.is_dir()  # the others find it
    (staging / "model.safetensors").write_bytes(b"weights")
    (staging / "rng_state_1.pth").write_bytes(b"rank 1")  # a file another rank wrote
    published = Path(publish_checkpoint(tmp_path, 4, staging))
    assert published.name == "checkpoint-4" and not staging.exists()
    assert {p.name for p in published.iterdir()} >= {"model.safetensors", "rng_state_1.pth"}
    assert [step for step, _ in list_checkpoints(tmp_path)] == [4]  # complete: it has its marker
