"""The base model's evaluation is computed once per (model, held-out rows, settings that affect it) on a host and
reused: a second run that only changes the learning rate reports the same "before" evaluation without running it;
what the key holds and ignores is checked without a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.engine import ListCallback, eval_cache, run_training


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FINETUNE_EVAL_CACHE", "1")
    monkeypatch.setattr(eval_cache, "cache_dir", lambda: tmp_path / "cache")
    return tmp_path / "cache" / eval_cache.SUBDIR


def _key(**changes: Any) -> str:
    values: dict[str, Any] = {
        "model_path": "/nowhere/model",
        "method": "sft",
        "weights": "lora",
        "hyperparameters": {"learning_rate": 1e-3, "max_length": 128, "beta": 0.1},
        "eval_examples": [{"messages": [{"role": "user", "content": "hi"}]}],
        "chat_template": "t",
        "precision": "fp32",
    }
    values.update(changes)
    return eval_cache.cache_key(**values)


def test_the_key_ignores_training_only_settings_and_sees_the_rest(cache: Path) -> None:
    base = _key()
    assert _key(hyperparameters={"learning_rate": 5e-4, "max_length": 128, "beta": 0.1, "max_steps": 9}) == base
    assert _key(hyperparameters={"learning_rate": 1e-3, "max_length": 256, "beta": 0.1}) != base
    assert _key(hyperparameters={"learning_rate": 1e-3, "max_length": 128, "beta": 0.2}) != base
    assert _key(eval_examples=[{"messages": [{"role": "user", "content": "hello"}]}]) != base
    assert len({base, _key(weights="qlora"), _key(precision="bf16"), _key(method="dpo"), _key(chat_template="u")}) == 5
    eval_cache.store(base, {"eval_loss": 1.5, "eval_runtime": 2, "flag": True})
    assert eval_cache.load(base) == {"eval_loss": 1.5, "eval_runtime": 2.0}
    (cache / f"{base}.json").write_text("{not json")  # a damaged file is a miss, never an error
    assert eval_cache.load(base) is None


def test_a_second_run_that_only_changes_the_learning_rate_or_a_resumed_one_reuses_the_base_evaluation(
    tmp_path: Path, make_spec: Any, short_alpaca: Path, cache: Path
) -> None:
    rows = json.loads(short_alpaca.read_text())
    held = tmp_path / "held.json"
    held.write_text(json.dumps(rows[-4:]))

    def run(name: str, **hyper: Any) -> tuple[Any, ListCallback]:
        spec = make_spec(
            tmp_path / name,
            short_alpaca,
            hyper={"max_steps": 2, "max_eval_samples": 4, **hyper},
            data={"eval_files": (str(held),)},
        )
        events = ListCallback()
        return run_training(spec, [events]), events

    def before(events: ListCallback) -> list[Any]:
        return [e for e in events.of_type("eval") if e.phase == "before"]

    def logs(events: ListCallback) -> str:
        return "\n".join(e.line for e in events.of_type("log"))

    first, first_events = run("first", save_steps=2)
    assert first.status == "succeeded" and len(list(cache.glob("*.json"))) == 1
    assert "reused from the cache" not in logs(first_events)

    second, second_events = run("second", learning_rate=5e-4)  # only the optimisation changed: reused
    assert second.status == "succeeded" and "base model evaluation reused from the cache" in logs(second_events)
    [b1], [b2] = before(first_events), before(second_events)
    assert b2.eval_loss == pytest.approx(b1.eval_loss) and b2.step == 0 and b2.samples == 4
    assert second.metrics["eval_loss_before"] == pytest.approx(first.metrics["eval_loss_before"])
    assert second.metrics["eval_loss_after"] is not None

    # A resumed run (the same folder, from its checkpoint of step 2, one step more) skips it too.
    resumed, resumed_events = run("first", save_steps=2, max_steps=3)
    assert resumed.status == "succeeded" and resumed.final_step == 3
    assert "base model evaluation reused from the cache" in logs(resumed_events)
    assert [m.step for m in resumed_events.metrics] == [3]  # it resumed: step 3 was the only one trained
