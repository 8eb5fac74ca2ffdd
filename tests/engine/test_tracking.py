"""Experiment tracking (``hyper.report_to``) on a real run of the embedded model: TensorBoard event files read back
with TensorBoard's own reader, an MLflow run on a real ``mlflow server`` (params and the train-loss history read back
with ``MlflowClient``), and a Weights & Biases run in offline mode whose files never hold the API key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.tracking_server import mlflow_server
from training.engine import ListCallback, run_training
from training.engine.errors import ConfigError
from training.engine.hyperparams import HyperParams

WANDB_KEY = "trkSecretKey0123456789abcdef0123456789ab"  # a fake key: offline mode never sends it


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="module")
def tracked_run(
    tmp_path_factory: pytest.TempPathFactory, make_spec: Any, short_alpaca: Path, model_path: str, mlflow_url: str
) -> Any:
    """One 3-step LoRA SFT run reporting to all three trackers (W&B offline)."""
    out = tmp_path_factory.mktemp("tracked") / "run"
    spec = make_spec(
        out,
        short_alpaca,
        job_id="job-tracked",
        hyper={"max_steps": 3, "report_to": ["tensorboard", "mlflow", "wandb"]},
        data={"eval_files": (str(short_alpaca),)},
    )
    env = {
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_EXPERIMENT_NAME": "finetune-tests",
        "WANDB_MODE": "offline",
        "WANDB_API_KEY": WANDB_KEY,
        "WANDB_PROJECT": "finetune-tests",
        "WANDB_SILENT": "true",
        "FINETUNE_EVAL_CACHE": "0",  # evaluate "before" for real: a replayed cached evaluation reaches no tracker
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        events = ListCallback()
        result = run_training(spec, [events])
    return spec, result, events


def test_report_to_is_validated_with_a_clear_error() -> None:
    assert HyperParams(report_to="none").report_to == ()
    assert HyperParams(report_to=["TensorBoard", "mlflow", "mlflow"]).report_to == ("tensorboard", "mlflow")
    with pytest.raises(ConfigError, match=r"unknown tracker 'tensorbord' \(did you mean 'tensorboard'\?\)"):
        HyperParams(report_to=["tensorbord"])
    with pytest.raises(ConfigError, match="report_to must be a list"):
        HyperParams(report_to=3)


def test_tensorboard_events_hold_the_train_loss(tracked_run: Any) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec, result, events = tracked_run
    assert result.status == "succeeded"
    assert result.tracking["tensorboard"] == "tensorboard/"
    folder = Path(spec.output_dir) / "tensorboard"
    acc = EventAccumulator(str(folder))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [round(e.value, 4) for e in loss] == [round(m.loss, 4) for m in events.metrics]
    assert "eval/loss" in acc.Tags()["scalars"]  # the evaluations before and after training land there too


def test_mlflow_run_has_params_and_loss_history(tracked_run: Any, mlflow_url: str) -> None:
    from mlflow import MlflowClient

    spec, result, events = tracked_run
    info = result.tracking["mlflow"]
    assert info["url"] == f"{mlflow_url}/#/experiments/{info['experiment_id']}/runs/{info['run_id']}"
    client = MlflowClient(tracking_uri=mlflow_url)
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "job-tracked"
    assert client.get_experiment(run.info.experiment_id).name == "finetune-tests"
    assert float(run.data.params["learning_rate"]) == spec.hyper.learning_rate
    assert run.data.params["max_steps"] == "3"
    history = client.get_metric_history(info["run_id"], "loss")
    assert sorted(m.step for m in history) == [1, 2, 3]
    by_step = {m.step: m.value for m in history}
    assert [round(by_step[m.step], 4) for m in events.metrics] == [round(m.loss, 4) for m in events.metrics]
    assert {m.step for m in client.get_metric_history(info["run_id"], "eval_loss")} >= {0, 3}


def test_wandb_offline_run_writes_files_without_the_key(tracked_run: Any) -> None:
    spec, result, _events = tracked_run
    info = result.tracking["wandb"]
    assert info["mode"] == "offline" and info["url"] is None and info["run_id"]
    runs = list((Path(spec.output_dir) / "wandb").rglob("offline-run-*"))
    assert runs, "no offline W&B run folder"
    assert list(runs[0].glob("*.wandb")), "the offline run has no data file"
    for path in Path(spec.output_dir).rglob("*"):  # spec, result, W&B files, checkpoints: the key is nowhere
        if path.is_file():
            assert WANDB_KEY.encode() not in path.read_bytes(), path
    assert WANDB_KEY not in json.dumps(spec.to_dict()) + json.dumps(result.to_dict())
    assert all(WANDB_KEY not in json.dumps(e.to_dict()) for e in _events.events)
