"""DPO and ORPO with LoRA on real HH-RLHF pairs (the 4 shortest, all in every batch so the loss of the same pairs
is followed step by step), a few steps each: the preference loss falls and the adapter is trained."""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from training.engine import ListCallback, run_training


@pytest.mark.parametrize(("method", "lr"), [("dpo", 5e-4), ("orpo", 5e-4)])
def test_preference_training_with_lora_lowers_the_loss(
    method: str, lr: float, tmp_path: Path, make_spec: Any, short_hh: Path, check_metrics: Any, lora_b_norm: Any
) -> None:
    spec = make_spec(
        tmp_path / "run",
        short_hh,
        method=method,
        hyper={
            "max_steps": 5,
            "per_device_train_batch_size": 4,
            "learning_rate": lr,
            "beta": 0.1,
            "max_length": 128,
            "max_eval_samples": 4,
        },
        data={"eval_files": (str(short_hh),), "limit": 4},
    )
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded" and result.final_step == 5
    assert result.data["format"] == "hh_rlhf" and result.data["train_rows"] == 4
    check_metrics(events.metrics, 5)
    values = [m.loss for m in events.metrics]
    assert mean(values[-2:]) < mean(values[:2]), values
    assert result.metrics["eval_loss_after"] < result.metrics["eval_loss_before"]
    if method == "dpo":
        assert abs(result.metrics["eval_loss_before"] - 0.6931) < 1e-3  # policy == reference before training
        assert result.metrics["perplexity_before"] is None
        assert any("rewards/margins" in k for k in events.metrics[-1].extra)
    else:
        assert result.metrics["perplexity_after"] < result.metrics["perplexity_before"]  # of the chosen responses
        assert any("log_odds_ratio" in k for k in events.metrics[-1].extra)
    lines = [e.line for e in events.of_type("log")]
    assert any(line.startswith(f"{method.upper()} path: packed") for line in lines), lines  # CPU, LoRA, llama
    assert lora_b_norm(result.model_dir) > 0
    assert (Path(result.model_dir) / "chat_template.jinja").is_file()


@pytest.fixture()
def short_kto(tmp_path: Path, short_hh: Path) -> Path:
    """KTO rows made from the 4 shortest HH-RLHF pairs: each chosen answer desirable, each rejected one not."""
    import json

    from training.engine.data import load_examples

    rows = []
    for ex in load_examples([short_hh]).examples:
        if not (ex["chosen"][0]["content"].strip() and ex["rejected"][0]["content"].strip()):
            continue  # HH-RLHF prefers silence in a few rows; an empty answer is nothing to label
        if len(rows) == 8:
            break
        rows.append({"messages": [*ex["prompt"], *ex["chosen"]], "label": True})
        rows.append({"messages": [*ex["prompt"], *ex["rejected"]], "label": False})
    path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_kto_trains_labelled_answers_with_lora(
    tmp_path: Path, make_spec: Any, short_kto: Path, lora_b_norm: Any
) -> None:
    spec = make_spec(
        tmp_path / "run",
        short_kto,
        method="kto",
        hyper={
            "max_steps": 4,
            "per_device_train_batch_size": 4,
            "learning_rate": 5e-4,
            "max_length": 128,
            "validation_split": 0.25,
            "max_eval_samples": 2,
        },
    )
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded" and result.final_step == 4, result.error
    assert result.data["format"] == "kto" and result.data["train_rows"] == 6
    labels = result.data["labels"]
    assert labels["desirable"] + labels["undesirable"] == 6 and labels["desirable"] >= 1 and labels["undesirable"] >= 1
    lines = [e.line for e in events.of_type("log")]
    assert any("KTO balance" in line for line in lines)
    assert any(line.startswith("KTO path: packed") for line in lines), lines  # CPU, LoRA, llama
    assert any(line.startswith("KTO reference log-probs precomputed: 8 rows") for line in lines), lines  # train + eval
    assert all(m.loss is not None for m in events.metrics) and len(events.metrics) == 4
    assert any("kl" in k for k in events.metrics[-1].extra), events.metrics[-1].extra
    assert lora_b_norm(result.model_dir) > 0


def test_kto_trains_full_weights(tmp_path: Path, make_spec: Any, short_kto: Path, model_path: str) -> None:
    """KTO with full weights on the packed path, the reference precomputed from the model before training (TRL keeps
    no copy then); the saved model is a whole model whose weights moved."""
    from safetensors import safe_open

    spec = make_spec(
        tmp_path / "run",
        short_kto,
        method="kto",
        weights="full",
        hyper={"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-5, "max_length": 96},
    )
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded" and result.final_step == 2, result.error
    assert all(m.loss is not None for m in events.metrics) and len(events.metrics) == 2
    lines = [e.line for e in events.of_type("log")]
    assert any(line.startswith("KTO path: packed") for line in lines), lines  # full weights take it too
    assert any("KTO reference log-probs precomputed" in line for line in lines), lines
    out = Path(result.model_dir)
    assert not (out / "adapter_config.json").exists() and (out / "config.json").is_file()
    name = "model.layers.0.self_attn.q_proj.weight"

    def tensor(folder: Path) -> Any:
        for f in sorted(folder.glob("*.safetensors")):
            with safe_open(str(f), "pt") as fh:
                if name in fh.keys():  # noqa: SIM118 (safe_open has no __contains__)
                    return fh.get_tensor(name)
        raise AssertionError(f"{name} not in {folder}")

    assert not tensor(out).equal(tensor(Path(model_path)))
