"""finetune's training engine: plain Python (no Django), runs in a Celery worker, on Modal or from the CLI.

Public API: ``run_training(spec, callbacks) -> TrainingResult`` with the frozen ``TrainingSpec`` / ``HyperParams`` /
``DataSpec`` dataclasses, the run events and callbacks in ``training.engine.callbacks``, and the ``EngineError``
family. Importing this package is cheap: torch/transformers load only when a run starts.
"""

from __future__ import annotations

from . import callbacks as events
from .callbacks import (
    Callback,
    CheckpointEvent,
    EvalEvent,
    Event,
    JsonLinesCallback,
    ListCallback,
    LogEvent,
    MetricEvent,
    StatusEvent,
    StopFlagCallback,
)
from .checkpoints import latest_complete_checkpoint
from .errors import Cancelled, ConfigError, DataError, EngineError, ExportError, OutOfMemory
from .run import TrainingResult, run_training
from .spec import DataSpec, HyperParams, TrainingSpec

__all__ = [
    "Callback",
    "Cancelled",
    "CheckpointEvent",
    "ConfigError",
    "DataError",
    "DataSpec",
    "EngineError",
    "EvalEvent",
    "Event",
    "ExportError",
    "HyperParams",
    "JsonLinesCallback",
    "ListCallback",
    "LogEvent",
    "MetricEvent",
    "OutOfMemory",
    "StatusEvent",
    "StopFlagCallback",
    "TrainingResult",
    "TrainingSpec",
    "events",
    "latest_complete_checkpoint",
    "run_training",
]
