"""TrainingSpec / HyperParams / DataSpec: JSON round trip, validation messages, and bad input rejected before any
write (out-of-range values, unknown keys, max_length above the model's, DPO on SFT data, empty file, bad format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.engine import (
    ConfigError,
    DataError,
    DataSpec,
    EngineError,
    HyperParams,
    ListCallback,
    TrainingSpec,
    run_training,
)
from training.engine.spec import LR_SCHEDULERS


def full_spec() -> TrainingSpec:
    return TrainingSpec(
        job_id="42",
        base_model="embedded/SmolLM2-135M-Instruct",
        data=DataSpec(
            train_files=("a.jsonl", "b.jsonl"),
            format="sharegpt",
            column_mapping={"conversations": "conv"},
            eval_files=("c.jsonl",),
            limit=10,
        ),
        output_dir="/tmp/x",
        method="dpo",
        weights="qlora",
        hyper=HyperParams(
            num_train_epochs=2,
            learning_rate=1e-4,
            lora_target_modules=["q_proj", "v_proj"],
            lr_scheduler_type="cosine_with_min_lr",
            chat_template="chatml",
            eval_steps=5,
            early_stopping_patience=2,
        ),
        resume=False,
        init_from="/tmp/previous/final",
        use_unsloth="on",
        export_formats=("adapter", "gguf-q8_0"),
        compare_prompts=3,
    )


def test_spec_round_trips_through_json_exactly() -> None:
    spec = full_spec()
    data = json.loads(json.dumps(spec.to_dict()))
    again = TrainingSpec.from_dict(data)
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    assert again.hyper.lora_target_modules == ("q_proj", "v_proj")
    assert isinstance(again.hyper.num_train_epochs, float)


def test_defaults_round_trip_and_are_documented() -> None:
    spec = TrainingSpec("1", "m", DataSpec(train_files=("t.json",)), "sft", "lora", HyperParams(), "o")
    assert TrainingSpec.from_dict(spec.to_dict()) == spec
    assert spec.output_dir == "o" and spec.export_formats == () and spec.resume and spec.use_unsloth == "auto"
    assert TrainingSpec.from_dict({**spec.to_dict(), "hyper": {}}).hyper == HyperParams()
    with pytest.raises(ConfigError, match="method is required"):
        TrainingSpec.from_dict({k: v for k, v in spec.to_dict().items() if k != "method"})
    doc = HyperParams.__doc__ or ""
    for name in HyperParams.__dataclass_fields__:
        assert f"{name} (" in doc, f"HyperParams.{name} has no parameter doc"
    for name in TrainingSpec.__dataclass_fields__:
        assert f"{name} (" in (TrainingSpec.__doc__ or ""), f"TrainingSpec.{name} has no parameter doc"


def test_hyperparams_from_web_dict_accept_every_scheduler() -> None:
    for name in LR_SCHEDULERS:
        assert HyperParams.from_dict({"lr_scheduler_type": name}).lr_scheduler_type == name


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("learning_rate", 3, "learning_rate must be > 0 and < 1, got 3"),
        ("learning_rate", 0, "learning_rate must be > 0 and < 1, got 0"),
        ("num_train_epochs", -1, "num_train_epochs must be > 0 and <= 10000, got -1"),
        ("max_steps", 0, "max_steps must be between 1 and 10000000 (or -1), got 0"),
        ("per_device_train_batch_size", 0, "per_device_train_batch_size must be between 1 and 4096, got 0"),
        ("gradient_accumulation_steps", 1.5, "gradient_accumulation_steps must be an integer, got 1.5"),
        ("max_length", 4, "max_length must be between 8 and 1048576, got 4"),
        ("warmup_ratio", 1.0, "warmup_ratio must be >= 0 and < 1, got 1"),
        ("lora_r", 0, "lora_r must be between 1 and 4096, got 0"),
        ("lora_dropout", 1, "lora_dropout must be >= 0 and < 1, got 1"),
        ("beta", 0, "beta must be > 0 and <= 100, got 0"),
        ("validation_split", 1.5, "validation_split must be >= 0 and < 1, got 1.5"),
        ("save_total_limit", 0, "save_total_limit must be between 1 and 1000, got 0"),
        ("lr_scheduler_type", "cosyne", "lr_scheduler_type must be one of"),
        ("precision", "fp8", "precision must be one of 'auto', 'bf16', 'fp16', 'fp32', got 'fp8'"),
        ("train_on", "user", "train_on must be one of 'assistant', 'all', got 'user'"),
        ("chat_template", "vicuna", "chat_template must be one of auto, alpaca, chatml, llama2, completion"),
        ("lora_target_modules", [], "lora_target_modules must be 'all-linear' or a non-empty list"),
        ("seed", True, "seed must be an integer, got True"),
        ("learning_rate", float("nan"), "learning_rate must be a finite number, got nan"),
    ],
)
def test_out_of_range_hyperparameters_name_the_field_and_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        HyperParams.from_dict({field: value})
    assert message in str(err.value)


def test_unknown_hyperparameter_suggests_the_right_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown hyperparameter 'lerning_rate' \(did you mean 'learning_rate'\?\)"):
        HyperParams.from_dict({"lerning_rate": 1e-4})


def test_unknown_spec_and_data_keys_are_rejected() -> None:
    base = full_spec().to_dict()
    with pytest.raises(ConfigError, match=r"unknown spec field 'metod' \(did you mean 'method'\?\)"):
        TrainingSpec.from_dict({**base, "metod": "sft"})
    with pytest.raises(ConfigError, match=r"unknown data field 'train_file' \(did you mean 'train_files'\?\)"):
        TrainingSpec.from_dict({**base, "data": {"train_file": ["x"]}})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "ppo"}, "method must be one of 'sft', 'dpo', 'orpo', 'kto', got 'ppo'"),
        ({"weights": "lora8"}, "weights must be one of 'full', 'lora', 'qlora', got 'lora8'"),
        ({"use_unsloth": "yes"}, "use_unsloth must be one of 'auto', 'on', 'off', got 'yes'"),
        ({"export_formats": ["gguf-q4"]}, "export_formats: unknown format 'gguf-q4'"),
        ({"compare_prompts": -1}, "compare_prompts must be between 0 and 100, got -1"),
        ({"job_id": ""}, "job_id must be a non-empty string"),
        (
            {"method": "orpo", "hyper": {"loss_type": "ipo"}},
            "loss_type 'ipo' does not apply to orpo; choose left unset",
        ),
        (
            {"method": "dpo", "hyper": {"loss_type": "kto"}},
            "loss_type 'kto' does not apply to dpo; choose one of: sigm",
        ),
        (
            {"method": "kto", "hyper": {"per_device_train_batch_size": 1}},
            "KTO needs per_device_train_batch_size of at",
        ),
        ({"method": "dpo", "hyper": {"packing": "on"}}, "packing applies to SFT only; dpo keeps each example whole."),
    ],
)
def test_bad_spec_fields_are_rejected(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrainingSpec.from_dict({**full_spec().to_dict(), **changes})
    assert message in str(err.value)


def test_preference_loss_types_are_passed_per_method() -> None:
    spec = TrainingSpec.from_dict({**full_spec().to_dict(), "method": "dpo", "hyper": {"loss_type": "ipo"}})
    assert spec.hyper.loss_type == "ipo"
    kto = TrainingSpec.from_dict(
        {
            **full_spec().to_dict(),
            "method": "kto",
            "hyper": {"loss_type": "apo_zero_unpaired", "per_device_train_batch_size": 1},
        }
    )
    assert kto.hyper.loss_type == "apo_zero_unpaired"  # no KL term: a batch of one is fine


def test_data_spec_checks_format_and_files() -> None:
    with pytest.raises(ConfigError, match="format must be one of .*got 'alpacca'.*did you mean 'alpaca'"):
        DataSpec(train_files=("x.json",), format="alpacca")
    with pytest.raises(ConfigError, match="train_files must name at least one file"):
        DataSpec(train_files=())
    assert DataSpec(train_files="one.json").train_files == ("one.json",)
    assert DataSpec(train_files=("x",), format="auto").format is None


def test_early_stopping_needs_eval_steps() -> None:
    with pytest.raises(ConfigError, match="early_stopping_patience=3 needs eval_steps > 0"):
        HyperParams(early_stopping_patience=3)


# --- bad input at run time: a clear EngineError and nothing written ---------------------------------------------


def _run_expecting(spec: TrainingSpec, error: type[EngineError], pattern: str) -> ListCallback:
    events = ListCallback()
    with pytest.raises(error, match=pattern):
        run_training(spec, [events])
    assert not Path(spec.output_dir).exists(), "bad input must not write into output_dir"
    assert events.statuses[-1] == "failed"
    return events


def test_max_length_above_the_model_context_names_both_numbers(tmp_path, make_spec, short_alpaca, model_path) -> None:
    spec = make_spec(tmp_path / "out", short_alpaca, hyper={"max_length": 100_000})
    _run_expecting(spec, ConfigError, r"max_length=100000 .*max_position_embeddings=8192")


def test_dpo_on_sft_data_is_a_data_error(tmp_path, make_spec, short_alpaca, model_path) -> None:
    spec = make_spec(tmp_path / "out", short_alpaca, method="dpo")
    _run_expecting(spec, DataError, r"DPO needs preference data .* alpaca")


def test_sft_on_preference_data_is_a_data_error(tmp_path, make_spec, short_hh, model_path) -> None:
    spec = make_spec(tmp_path / "out", short_hh)
    _run_expecting(spec, DataError, r"preference data .*dpo.*orpo")


def test_empty_file_is_a_data_error(tmp_path, make_spec, model_path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _run_expecting(make_spec(tmp_path / "out", empty), DataError, "empty|no row|No row")


def test_unrecognised_columns_are_a_data_error(tmp_path, make_spec, model_path) -> None:
    odd = tmp_path / "odd.jsonl"
    odd.write_text("\n".join(json.dumps({"question": f"q{i}", "answer_text": f"a{i}"}) for i in range(5)))
    _run_expecting(make_spec(tmp_path / "out", odd), DataError, "format|column")


def test_missing_file_is_a_data_error(tmp_path, make_spec, model_path) -> None:
    _run_expecting(make_spec(tmp_path / "out", tmp_path / "nope.json"), DataError, "does not exist")


def test_unknown_lora_target_module_is_a_config_error(tmp_path, make_spec, short_alpaca, model_path) -> None:
    spec = make_spec(tmp_path / "out", short_alpaca, hyper={"lora_target_modules": ["no_such_proj"]})
    events = ListCallback()
    with pytest.raises(ConfigError, match="lora_target_modules"):
        run_training(spec, [events])
    assert not Path(spec.output_dir).exists()
