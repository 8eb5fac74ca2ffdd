"""The engine's one memory model: model shapes, step estimates, the gradient-checkpointing choice and the fit rule
shared by the run, the pre-launch estimate and the catalogue's fit check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from training.engine import memory

SMOLLM2 = {"hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536, "vocab_size": 49152}


def _step(weights: str = "lora", **kw) -> memory.MemoryEstimate:
    args = {"method": "sft", "batch_size": 4, "max_length": 1024, "precision": "bf16", "device_type": "cuda", **kw}
    return memory.estimate_memory(memory.model_shape(SMOLLM2, params=135_000_000), weights=weights, **args)


def test_model_shape_reads_dicts_config_objects_and_nested_text_configs() -> None:
    shape = memory.model_shape(SMOLLM2)
    assert (shape.hidden, shape.layers, shape.intermediate, shape.vocab) == (576, 30, 1536, 49152)
    assert shape.params > 0
    assert memory.model_shape(SMOLLM2, params=123).params == 123
    assert memory.model_shape(SimpleNamespace(**SMOLLM2)) == shape
    assert memory.model_shape({"text_config": SMOLLM2, "model_type": "vlm"}) == shape
    gpt2 = memory.model_shape({"n_embd": 768, "n_layer": 12, "vocab_size": 50257})
    assert (gpt2.hidden, gpt2.layers, gpt2.intermediate) == (768, 12, 4 * 768)


def test_model_shape_without_a_config_scales_the_embedded_shape_to_the_parameter_count() -> None:
    default = memory.model_shape()
    assert default.hidden == 576 and default.params == 135_000_000
    big = memory.model_shape(params=7_000_000_000)
    assert big.params == 7_000_000_000 and 3500 < big.hidden < 4500


def test_step_memory_grows_with_weights_batch_length_and_preference_methods() -> None:
    full, lora, qlora = _step("full"), _step("lora"), _step("qlora")
    assert full.fixed_mb > lora.fixed_mb > qlora.fixed_mb > 0
    assert full.activations_mb == lora.activations_mb == qlora.activations_mb > 0
    assert _step(batch_size=8).activations_mb == pytest.approx(2 * _step().activations_mb)
    assert _step(max_length=2048).activations_mb == pytest.approx(2 * _step().activations_mb)
    assert _step(method="dpo").activations_mb > 2 * _step().activations_mb  # pairs, plus TRL's full logits
    assert _step(precision="fp32", device_type="cpu").activations_mb > _step().activations_mb
    packed = _step(method="dpo", device_type="cpu", chunked_logits=True)  # one logits chunk, not all of them
    assert packed.activations_mb < _step(method="dpo", device_type="cpu").activations_mb - 1000
    assert packed.activations_mb > 2 * _step(device_type="cpu").activations_mb


@pytest.mark.parametrize(
    "method,model_type,weights,device,packed",
    [
        ("dpo", "llama", "lora", "cpu", True),
        ("dpo", "gpt2", "lora", "cpu", False),
        ("dpo", "llama", "full", "cpu", True),  # the reference: the model before training, or TRL's copy
        ("dpo", "llama", "qlora", "cpu", False),
        ("dpo", "llama", "lora", "cuda", False),
        ("orpo", "llama", "full", "cpu", True),  # no reference model: full weights are packed too
        ("orpo", "qwen2", "lora", "cpu", True),
        ("orpo", None, "lora", "cpu", False),
        ("kto", "llama", "lora", "cpu", True),
        ("kto", "llama", "full", "cpu", True),
        ("kto", "llama", "qlora", "cpu", False),
    ],
)
def test_a_run_expects_the_packed_preference_path_where_it_will_take_it(
    method: str, model_type: str | None, weights: str, device: str, packed: bool
) -> None:
    from training.engine.trainers.memory_guard import _packed_preference_expected

    spec = SimpleNamespace(method=method, weights=weights, hyper=SimpleNamespace(num_processes=1, loss_type=None))
    ctx = SimpleNamespace(spec=spec, device=SimpleNamespace(type=device), use_unsloth=False)
    assert _packed_preference_expected(ctx, SimpleNamespace(model_type=model_type)) is packed  # type: ignore[arg-type]


def test_checkpointing_is_the_sparsest_choice_that_fits_the_budget() -> None:
    step = memory.MemoryEstimate(fixed_mb=1000, activations_mb=3000)
    assert step.checkpointing_for(10_000) == 0  # 4000 <= 8000
    assert step.checkpointing_for(4000) == 3  # 3000 <= 3200
    assert step.checkpointing_for(3200) == 2  # 2500 <= 2560
    assert step.checkpointing_for(2000) == 1  # 1000 <= 1600
    assert step.checkpointing_for(1000) is None
    assert step.peak_mb(2) == 2500 and step.peak_mb() == 4000


def test_fits_leaves_room_for_the_runtime_and_agrees_with_the_checkpointing_choice() -> None:
    step = memory.MemoryEstimate(fixed_mb=1000, activations_mb=3000)
    device_mb = 1000 / memory.BUDGET_FRACTION + memory.RUNTIME_MB
    assert step.fits(device_mb) and not step.fits(device_mb - 1)
    assert step.fits(device_mb) == (step.checkpointing_for(device_mb - memory.RUNTIME_MB) is not None)
    assert step.device_gb() == round((4000 + memory.RUNTIME_MB) / 1024, 2)


def test_estimates_by_weights_and_labels() -> None:
    steps = memory.estimates_by_weights(memory.model_shape(SMOLLM2), method="sft", batch_size=2, max_length=512)
    assert set(steps) == {"full", "lora", "qlora"}
    assert [memory.checkpointing_label(n) for n in (0, 1, 2, 3, 4, 11)] == [
        "off",
        "every layer",
        "every 2nd layer",
        "every 3rd layer",
        "every 4th layer",
        "every 11th layer",
    ]


def test_local_memory_and_precision() -> None:
    assert memory.local_memory_gb(24) == 24.0 and memory.local_device_type(24) == "cuda"
    assert memory.local_memory_gb(None) > 0 and memory.local_device_type(0) == "cpu"
    assert memory.default_precision("cuda") == "bf16" and memory.default_precision("cpu", "fp32") == "fp32"
    assert memory.default_precision("cpu") in ("bf16", "fp32")


def test_oom_advice_names_the_estimate_and_whether_it_could_fit() -> None:
    assert memory.oom_advice() == memory.OOM_ADVICE
    step = memory.MemoryEstimate(fixed_mb=4096, activations_mb=2048)
    text = memory.oom_advice(step, device_mb=2048)
    assert text.startswith(memory.OOM_ADVICE) and "4.0 GB weights/optimizer + 2.0 GB activations" in text
    assert "does not fit 2 GB" in text
    assert "does not fit" not in memory.oom_advice(step, device_mb=80 * 1024)


def test_base_model_shape_reads_the_embedded_config_without_converting(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FINETUNE_CACHE_DIR", str(tmp_path))
    assert memory.base_model_shape("embedded/SmolLM2-135M-Instruct", 135_000_000) == memory.model_shape(
        params=135_000_000
    )  # not converted yet: no config, the default shape
    folder = tmp_path / "models" / "SmolLM2-135M-Instruct"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100}')
    shape = memory.base_model_shape("embedded/SmolLM2-135M-Instruct", 1000)
    assert (shape.hidden, shape.layers, shape.params) == (64, 2, 1000)
    assert memory.base_model_shape("org/other-model", 7_000_000_000).hidden > 3500


def test_cpu_runs_keep_freed_memory_and_hand_it_back_afterwards() -> None:
    """``keep_freed_memory`` (a CPU run's start): freed blocks stay in the process for the next step instead of being
    page-faulted in again; ``release_freed_memory`` (the run's end) hands them back to the kernel. Measured in a fresh
    process: this one's heap already holds the free memory of the tests before."""
    import json
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt is Linux-only")
    script = """
import json, torch
from training.engine.device import _rss_mb, keep_freed_memory, release_freed_memory
applied = keep_freed_memory()
base = _rss_mb()
blocks = [torch.ones(2**18) for _ in range(300)]  # 300 x 1 MB, served from the heap
grown = _rss_mb()
del blocks
kept = _rss_mb()
release_freed_memory()
print(json.dumps({"applied": applied, "base": base, "grown": grown, "kept": kept, "released": _rss_mb()}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    if not rss["applied"]:
        pytest.skip("glibc's mallopt is not available here")
    assert rss["grown"] > rss["base"] + 250, rss
    assert rss["kept"] > rss["base"] + 250, rss  # still resident: the next step reuses it without faults
    assert rss["released"] < rss["kept"] - 200, rss
