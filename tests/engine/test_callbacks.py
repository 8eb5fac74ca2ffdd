"""Events and callbacks: JSON-safe payloads, the ready-made callbacks, a failing reporter never kills a run, and
cooperative cancellation stops within one optimizer step with a complete checkpoint (then resumes to the end)."""

from __future__ import annotations

import io
import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest

from training.engine import (
    CheckpointEvent,
    EvalEvent,
    JsonLinesCallback,
    ListCallback,
    LogEvent,
    MetricEvent,
    StatusEvent,
    StopFlagCallback,
    latest_complete_checkpoint,
    run_training,
)
from training.engine.callbacks import Callback, Emitter
from training.engine.checkpoints import MARKER, list_checkpoints


def metric(**kw: Any) -> MetricEvent:
    values = dict(
        step=1,
        total_steps=10,
        epoch=0.1,
        loss=1.5,
        learning_rate=1e-4,
        grad_norm=0.5,
        tokens_per_s=100.0,
        samples_per_s=1.0,
        tokens=100,
        memory_mb=500.0,
        memory={"rss_mb": 500.0},
        elapsed_s=1.0,
        eta_s=9.0,
    )
    values.update(kw)
    return MetricEvent(**values)


def test_every_event_serializes_with_its_type() -> None:
    events = [
        metric(),
        EvalEvent(step=3, eval_loss=1.2, perplexity=math.exp(1.2), phase="after"),
        StatusEvent(status="training", message="go"),
        LogEvent(level="warning", line="careful"),
        CheckpointEvent(step=3, path="/x/checkpoint-3"),
    ]
    types = [json.loads(json.dumps(e.to_dict()))["type"] for e in events]
    assert types == ["metric", "eval", "status", "log", "checkpoint"]
    assert events[0].to_dict()["memory"] == {"rss_mb": 500.0}


def test_non_finite_numbers_become_null() -> None:
    d = metric(loss=float("nan"), grad_norm=float("inf")).to_dict()
    assert d["loss"] is None and d["grad_norm"] is None
    json.dumps(d, allow_nan=False)


def test_json_lines_callback_writes_one_object_per_line() -> None:
    stream = io.StringIO()
    cb = JsonLinesCallback(stream)
    cb.on_event(metric(step=1))
    cb.on_event(StatusEvent(status="succeeded"))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["type"] for line in lines] == ["metric", "status"] and lines[0]["loss"] == 1.5
    assert not cb.should_stop()


def test_stop_flag_callback_watches_a_file_and_an_event(tmp_path: Path) -> None:
    flag = tmp_path / "stop"
    by_file = StopFlagCallback(flag)
    assert not by_file.should_stop()
    flag.touch()
    assert by_file.should_stop()
    event = threading.Event()
    by_event = StopFlagCallback(event=event)
    assert not by_event.should_stop()
    event.set()
    assert by_event.should_stop()
    assert isinstance(by_event, Callback) and isinstance(ListCallback(), Callback)


class Exploding:
    """A reporter whose backend is down."""

    def __init__(self) -> None:
        self.calls = 0

    def on_event(self, event: Any) -> None:
        self.calls += 1
        raise ConnectionError("reporter down")

    def should_stop(self) -> bool:
        raise ConnectionError("reporter down")


def test_emitter_survives_failing_callbacks_and_remembers_a_stop() -> None:
    seen = ListCallback()
    stop = StopFlagCallback()
    emitter = Emitter([Exploding(), seen, stop], job_id="t")
    emitter.status("training")
    assert seen.statuses == ["training"]
    assert not emitter.should_stop()
    stop.stop()
    assert emitter.should_stop()
    stop.event.clear()
    assert emitter.should_stop()  # sticky: a run that began stopping keeps stopping


class StopAtStep:
    """Requests a stop once the metric of step ``k`` arrives (i.e. after optimizer step k)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.flag = False

    def on_event(self, event: Any) -> None:
        if isinstance(event, MetricEvent) and event.step >= self.k:
            self.flag = True

    def should_stop(self) -> bool:
        return self.flag


def test_cancel_stops_within_one_step_saves_a_checkpoint_then_resumes(
    tmp_path: Path, make_spec: Any, short_alpaca: Path, check_metrics: Any
) -> None:
    k = 2
    spec = make_spec(
        tmp_path / "run",
        short_alpaca,
        hyper={"max_steps": 4, "save_steps": 0, "per_device_train_batch_size": 2, "max_length": 96},
    )
    events, exploding = ListCallback(), Exploding()
    result = run_training(spec, [exploding, events, StopAtStep(k)])
    assert result.status == "cancelled"
    assert k <= result.final_step <= k + 1
    assert result.model_dir is None and not (tmp_path / "run" / "final").exists()
    checkpoint = latest_complete_checkpoint(spec.output_dir)
    assert checkpoint is not None and checkpoint == result.checkpoint
    assert checkpoint.endswith(f"checkpoint-{result.final_step}") and (Path(checkpoint) / MARKER).is_file()
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert (Path(checkpoint) / name).is_file(), name
    assert events.statuses[-1] == "cancelled" and exploding.calls > 0
    assert [e.step for e in events.of_type("checkpoint")] == [result.final_step]
    assert max(m.step for m in events.metrics) == result.final_step

    resumed_events = ListCallback()
    resumed = run_training(spec, [resumed_events])
    assert resumed.status == "succeeded" and resumed.final_step == 4
    assert [m.step for m in resumed_events.metrics] == list(range(result.final_step + 1, 5))
    check_metrics(resumed_events.metrics, 4)
    assert "resuming from" in next(e.message for e in resumed_events.of_type("status") if e.status == "training")
    assert [s for s, _ in list_checkpoints(spec.output_dir)] == [result.final_step]


def test_eval_during_training_feeds_early_stopping(tmp_path: Path, make_spec: Any, short_alpaca: Path) -> None:
    spec = make_spec(
        tmp_path / "run",
        short_alpaca,
        hyper={
            "max_steps": 6,
            "per_device_train_batch_size": 2,
            "max_length": 96,
            "eval_steps": 1,
            "early_stopping_patience": 1,
            "early_stopping_threshold": 10.0,
            "max_eval_samples": 2,
        },
        data={"eval_files": (str(short_alpaca),)},
    )
    events = ListCallback()
    result = run_training(spec, [events])
    # The first evaluation sets the best loss; the second cannot beat it by 10, so patience 1 stops the run.
    assert result.status == "succeeded" and result.metrics["early_stopped"] and result.final_step == 2
    evals = events.of_type("eval")
    assert [(e.phase, e.step) for e in evals] == [("before", 0), ("during", 1), ("during", 2), ("after", 2)]
    assert any("early stopping" in e.line for e in events.of_type("log"))


def test_gradient_accumulation_reports_the_same_loss_as_one_big_batch(
    tmp_path: Path, make_spec: Any, short_alpaca: Path
) -> None:
    def first_loss(batch: int, accumulation: int) -> tuple[float, int]:
        events = ListCallback()
        spec = make_spec(
            tmp_path / f"b{batch}x{accumulation}",
            short_alpaca,
            hyper={
                "max_steps": 1,
                "per_device_train_batch_size": batch,
                "gradient_accumulation_steps": accumulation,
                "max_length": 96,
                # fp32: the check is the token weighting; in bf16 two half-size batches round differently from one
                # (8e-4 apart on an AMX CPU, whose matmul blocking follows the row count)
                "precision": "fp32",
            },
        )
        run_training(spec, [events])
        (m,) = events.metrics
        return m.loss, m.tokens

    big, big_tokens = first_loss(4, 1)
    accumulated, acc_tokens = first_loss(2, 2)
    # Same 4 rows, same weights: the accumulated loss is the token-weighted mean over both micro-batches.
    assert acc_tokens == big_tokens
    assert accumulated == pytest.approx(big, rel=1e-4)
