"""Experiment tracking (``hyper.report_to``): TensorBoard, MLflow and Weights & Biases through transformers' own
callbacks (``TensorBoardCallback``, ``MLflowCallback``, ``WandbCallback``), set up so that every method logs the same
way and the run says where its tracking went.

Where things go:
- TensorBoard: event files in ``<output_dir>/tensorboard/`` (kept and uploaded with the run).
- MLflow: the server of ``MLFLOW_TRACKING_URI`` (environment), experiment ``MLFLOW_EXPERIMENT_NAME`` (default
  ``finetune``), one run per job named after the job id; a resumed job continues the same MLflow run (its id is kept
  in ``<output_dir>/tracking.json``).
- Weights & Biases: project ``WANDB_PROJECT`` (default ``finetune``) with the key of ``WANDB_API_KEY``; the run's
  local files go to ``<output_dir>/wandb/``. ``WANDB_MODE=offline`` writes only the local files.

The secrets (the W&B key, credentials in the MLflow URI) come only from the environment of the training process:
they are never part of the spec, the result or a log line.

The callbacks stay open across the evaluations before and after training (so the "after" eval loss lands in the
same run) and are closed by ``Tracking.close`` at the end of the run, with the run's outcome.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError
from .hyperparams import REPORT_TO

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PROJECT",
    "REPORT_TO",
    "TENSORBOARD_DIR",
    "TRACKING_FILE",
    "Tracking",
    "check_trackers",
    "forget_tracking",
]

TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
TRACKING_FILE = "tracking.json"
DEFAULT_PROJECT = "finetune"  # the MLflow experiment and W&B project when the environment names none

# The Python module each tracker needs, and the package that provides it.
_MODULES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "mlflow-skinny"),
    "wandb": ("wandb", "wandb"),
}


def check_trackers(report_to: Sequence[str]) -> None:
    """Preflight: a ``ConfigError`` naming the package to install when a tracker's library is missing."""
    import importlib.util

    for name in report_to:
        module, package = _MODULES[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"report_to={name!r} needs the {package!r} package on the training machine.")


def public_uri(uri: str) -> str:
    """A tracking URI without credentials (``https://user:pass@host`` -> ``https://host``), fit for a result."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Tracking:
    """The tracking callbacks of one run (none when ``report_to`` is empty) and what they report.

    ``callbacks()`` gives the transformers callbacks to add to the Trainer; ``close(status)`` ends the runs
    (``FINISHED``, ``FAILED`` or ``KILLED``, MLflow's names) and returns where tracking went, for the result::

        {"tensorboard": "tensorboard/", "mlflow": {"run_id": ..., "experiment_id": ..., "url": ...},
         "wandb": {"run_id": ..., "url": ..., "mode": "online"}}
    """

    def __init__(self, report_to: Sequence[str], *, output_dir: str, run_name: str) -> None:
        self.report_to = tuple(report_to)
        self.output_dir = Path(output_dir)
        self.run_name = run_name
        self._callbacks: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.closed = False

    # --- setup -------------------------------------------------------------------------------------------------------
    def callbacks(self) -> list[Any]:
        """The transformers callbacks for ``report_to`` (built once)."""
        if not self._callbacks:
            builders = {"tensorboard": self._tensorboard, "mlflow": self._mlflow, "wandb": self._wandb}
            for name in self.report_to:
                self._callbacks[name] = builders[name]()
        return list(self._callbacks.values())

    def _tensorboard(self) -> Any:
        from transformers.integrations import TensorBoardCallback

        class EngineTensorBoardCallback(TensorBoardCallback):
            """Writes to ``<output_dir>/tensorboard/``; stays open until ``Tracking.close``."""

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if self.tb_writer is not None:
                    self.tb_writer.flush()

        callback = EngineTensorBoardCallback()
        callback.logging_dir = str(self.output_dir / TENSORBOARD_DIR)
        return callback

    def _mlflow(self) -> Any:
        from transformers.integrations import MLflowCallback

        tracking = self

        class EngineMLflowCallback(MLflowCallback):
            """One MLflow run per job (continued on resume), in the experiment of the environment; ended by
            ``Tracking.close`` so that the evaluation after training lands in it too."""

            run_id: str | None = None
            experiment_id: str | None = None

            def setup(self, args: Any, state: Any, model: Any) -> None:
                mlflow = self._ml_flow
                if not state.is_world_process_zero:
                    return super().setup(args, state, model)
                uri = os.environ.get("MLFLOW_TRACKING_URI")
                if uri:
                    mlflow.set_tracking_uri(uri)
                experiment = mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT)
                previous = tracking._saved().get("mlflow_run_id")
                if mlflow.active_run() is not None:  # a run left over by an earlier job in this process
                    mlflow.end_run()
                run = mlflow.start_run(
                    run_id=previous or None,
                    run_name=None if previous else tracking.run_name,
                    experiment_id=None if previous else experiment.experiment_id,
                )
                super().setup(args, state, model)  # logs the parameters into the active run
                self._auto_end_run = True
                self.run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
                tracking._save(mlflow_run_id=self.run_id)

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                return None  # Tracking.close ends the run

        return EngineMLflowCallback()

    def _wandb(self) -> Any:
        from transformers.integrations import WandbCallback

        tracking = self

        class EngineWandbCallback(WandbCallback):
            """The W&B run is named after the job and keeps its local files in ``<output_dir>/wandb/``."""

            def setup(self, args: Any, state: Any, model: Any, **kwargs: Any) -> None:
                if state.is_world_process_zero and self._wandb.run is None:
                    folder = tracking.output_dir / WANDB_DIR
                    folder.mkdir(parents=True, exist_ok=True)
                    self._wandb.init(
                        project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                        name=tracking.run_name,
                        dir=str(folder),
                    )
                super().setup(args, state, model, **kwargs)

        return EngineWandbCallback()

    # --- the end -----------------------------------------------------------------------------------------------------
    def close(self, status: str = "FINISHED") -> dict[str, Any]:
        """End every tracker's run with ``status``; where tracking went (see the class). Never raises: tracking
        must not cost a trained model."""
        if self.closed:
            return self.info
        self.closed = True
        for name, callback in self._callbacks.items():
            try:
                entry = getattr(self, f"_close_{name}")(callback, status)
            except Exception as exc:  # noqa: BLE001 - reported, never fatal
                logger.warning("closing the %s run failed: %s", name, exc)
                entry = {"error": f"{type(exc).__name__}: {exc}"}
            if entry is not None:
                self.info[name] = entry
        return self.info

    def _close_tensorboard(self, callback: Any, status: str) -> str | None:
        if callback.tb_writer is not None:
            callback.tb_writer.close()
            callback.tb_writer = None
        folder = self.output_dir / TENSORBOARD_DIR
        return f"{TENSORBOARD_DIR}/" if folder.is_dir() and any(folder.rglob("events.out.tfevents.*")) else None

    def _close_mlflow(self, callback: Any, status: str) -> dict[str, Any] | None:
        mlflow = callback._ml_flow
        if callback.run_id is None:
            return None
        active = mlflow.active_run()
        if active is not None and active.info.run_id == callback.run_id:
            mlflow.end_run(status=status)
        callback._auto_end_run = False
        uri = public_uri(mlflow.get_tracking_uri())
        url = None
        if uri.startswith(("http://", "https://")):
            url = f"{uri.rstrip('/')}/#/experiments/{callback.experiment_id}/runs/{callback.run_id}"
        return {"run_id": callback.run_id, "experiment_id": callback.experiment_id, "url": url}

    def _close_wandb(self, callback: Any, status: str) -> dict[str, Any] | None:
        wandb = callback._wandb
        run = wandb.run if wandb is not None else None
        if run is None:
            return None
        offline = bool(getattr(run, "offline", False)) or run.settings.mode == "offline"
        entry = {
            "run_id": run.id,
            "project": run.project,
            "url": None if offline else run.url,
            "mode": "offline" if offline else "online",
        }
        wandb.finish(exit_code=0 if status == "FINISHED" else 1)
        return entry

    # --- the run folder's record (the MLflow run to continue on resume) ---------------------------------------------
    def _saved(self) -> dict[str, Any]:
        try:
            data = json.loads((self.output_dir / TRACKING_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, **values: Any) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        data = {**self._saved(), **values}
        tmp = self.output_dir / f".{TRACKING_FILE}.tmp"
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.output_dir / TRACKING_FILE)


def forget_tracking(output_dir: str | os.PathLike[str]) -> None:
    """A fresh (not resumed) run in ``output_dir``: drop the earlier TensorBoard events and the MLflow run to
    continue."""
    import shutil

    folder = Path(output_dir)
    shutil.rmtree(folder / TENSORBOARD_DIR, ignore_errors=True)
    (folder / TRACKING_FILE).unlink(missing_ok=True)
