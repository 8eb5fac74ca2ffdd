"""Early stopping on the real embedded SmolLM2: a high learning rate on 8 rows makes the held-out loss stop
improving; the run stops after `early_stopping_patience` evaluations and the best weights (lowest eval loss) are the
result in final/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.engine import ConfigError, HyperParams, ListCallback, run_training


def _tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def split_alpaca(tmp_path_factory: pytest.TempPathFactory, alpaca_file: Path) -> tuple[Path, Path]:
    """8 short training rows and 4 different short rows held out for evaluation."""
    rows = json.loads(alpaca_file.read_text())
    rows = sorted(rows, key=lambda r: len(r["instruction"]) + len(r["input"]) + len(r["output"]))
    folder = tmp_path_factory.mktemp("es-data")
    train, held = folder / "train.json", folder / "eval.json"
    train.write_text(json.dumps(rows[:8]))
    held.write_text(json.dumps(rows[8:12]))
    return train, held


def test_plateauing_eval_loss_stops_the_run_and_final_holds_the_best_weights(
    tmp_path: Path, make_spec: Any, split_alpaca: tuple[Path, Path]
) -> None:
    train, held = split_alpaca
    spec = make_spec(
        tmp_path / "run",
        train,
        hyper={
            "max_steps": 14,
            "per_device_train_batch_size": 2,
            "max_length": 96,
            "learning_rate": 2e-3,  # high for 8 rows: the held-out loss falls for a few steps, then turns up
            "lora_r": 4,
            "lora_alpha": 8,
            "lora_target_modules": ["q_proj", "v_proj"],
            "eval_steps": 1,
            "early_stopping_patience": 2,
            "max_eval_samples": 4,
            "save_steps": 1,  # a checkpoint per step, so final/ can be compared with the best step's checkpoint
            "save_total_limit": 50,
        },
        data={"eval_files": (str(held),)},
    )
    assert spec.hyper.keeps_best_model  # on by default with early stopping
    events = ListCallback()
    result = run_training(spec, [events])

    assert result.status == "succeeded" and result.metrics["early_stopped"]
    assert result.final_step < 14, "the run did not stop early"
    during = [e for e in events.of_type("eval") if e.phase == "during"]
    by_step: dict[int, float] = {}
    for e in during:  # the first evaluation of a step counts (a re-evaluation of the same weights is equal)
        by_step.setdefault(e.step, e.eval_loss)
    best_step = min(by_step, key=lambda s: by_step[s])
    print("eval loss by step:", {s: round(v, 4) for s, v in by_step.items()}, "best", best_step)
    # Patience 2: the last two evaluations did not beat the best one, and the run stopped right there.
    assert sorted(by_step)[-1] == result.final_step
    assert best_step == result.final_step - 2
    assert result.metrics["best_step"] == best_step
    assert result.metrics["best_eval_loss"] == pytest.approx(by_step[best_step])
    assert result.metrics["best_model_restored"] is True
    assert "best weights, from step" in result.message
    # The result model is the best step's weights, not the last step's...
    final = _tensors(Path(result.model_dir) / "adapter_model.safetensors")
    best = _tensors(Path(spec.output_dir) / f"checkpoint-{best_step}" / "adapter_model.safetensors")
    last = _tensors(Path(spec.output_dir) / f"checkpoint-{result.final_step}" / "adapter_model.safetensors")
    assert final.keys() == best.keys() and final
    assert all(final[k].equal(best[k]) for k in final)
    assert not all(final[k].equal(last[k]) for k in final)
    # ... and the "after" evaluation measured them: it equals the best evaluation during training.
    after = [e for e in events.of_type("eval") if e.phase == "after"]
    assert len(after) == 1 and after[0].eval_loss == pytest.approx(by_step[best_step], rel=1e-4)
    assert result.metrics["eval_loss_after"] == pytest.approx(by_step[best_step], rel=1e-4)
    assert any("restored the best weights" in e.line for e in events.of_type("log"))


def test_best_model_option_is_validated() -> None:
    with pytest.raises(ConfigError, match="load_best_model_at_end needs eval_steps > 0"):
        HyperParams(load_best_model_at_end=True)
    with pytest.raises(ConfigError, match="load_best_model_at_end must be true, false or null"):
        HyperParams.from_dict({"load_best_model_at_end": "yes", "eval_steps": 5})
    assert not HyperParams(eval_steps=5).keeps_best_model
    assert HyperParams(eval_steps=5, early_stopping_patience=2).keeps_best_model
    assert not HyperParams(eval_steps=5, early_stopping_patience=2, load_best_model_at_end=False).keeps_best_model
    assert HyperParams.from_dict(HyperParams(eval_steps=5, load_best_model_at_end=True).to_dict()).keeps_best_model


class _StopAfter:
    """Cancels the run once the metric of step ``k`` arrived."""

    def __init__(self, k: int) -> None:
        self.k, self.flag = k, False

    def on_event(self, event: Any) -> None:
        if getattr(event, "type", "") == "metric" and event.step >= self.k:
            self.flag = True

    def should_stop(self) -> bool:
        return self.flag


def test_a_resumed_run_keeps_the_best_weights_from_before_the_interruption(
    tmp_path: Path, make_spec: Any, split_alpaca: tuple[Path, Path]
) -> None:
    train, held = split_alpaca
    spec = make_spec(
        tmp_path / "run",
        train,
        hyper={
            "max_steps": 14,
            "per_device_train_batch_size": 2,
            "max_length": 96,
            "learning_rate": 3e-2,
            "lora_r": 4,
            "lora_alpha": 8,
            "lora_target_modules": ["q_proj", "v_proj"],
            "eval_steps": 1,
            "early_stopping_patience": 2,
            "max_eval_samples": 4,
            "save_steps": 1,
            "save_total_limit": 50,
        },
        data={"eval_files": (str(held),)},
    )
    first_events = ListCallback()
    first = run_training(spec, [first_events, _StopAfter(2)])
    assert first.status == "cancelled"
    first_evals = {e.step: e.eval_loss for e in first_events.of_type("eval") if e.phase == "during"}
    assert (Path(spec.output_dir) / "best" / "best.json").is_file()

    events = ListCallback()
    result = run_training(spec, [events])  # resumes from the cancellation checkpoint
    assert result.status == "succeeded"
    evals = dict(first_evals)
    for e in events.of_type("eval"):
        if e.phase == "during":
            evals.setdefault(e.step, e.eval_loss)
    best_step = min(evals, key=lambda s: evals[s])
    print("eval loss by step:", {s: round(v, 4) for s, v in evals.items()}, "best", best_step)
    assert result.metrics["best_step"] == best_step
    final = _tensors(Path(result.model_dir) / "adapter_model.safetensors")
    best = _tensors(Path(spec.output_dir) / f"checkpoint-{best_step}" / "adapter_model.safetensors")
    assert all(final[k].equal(best[k]) for k in final)
