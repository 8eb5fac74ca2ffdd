"""finetune's training engine: plain Python (no Django), runs in a Celery worker, on Modal or from the CLI.

Public API: ``run_training(spec, callbacks) -> TrainingResult`` (``Run`` runs it phase by phase) with the frozen
``TrainingSpec`` / ``HyperParams`` / ``DataSpec`` dataclasses, the run events and callbacks in
``training.engine.callbacks``, the ``EngineError`` family, and the memory model of a training step in
``training.engine.memory`` (used by the run and by the apps' estimates). Importing this package is cheap:
torch/transformers load only when a run starts.
"""

from __future__ import annotations

import os

# No usage telemetry from huggingface_hub / transformers / TRL wherever the engine runs (worker, Modal, CLI): the flag
# is read when huggingface_hub is first imported, which happens after this (torch and transformers load lazily).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from . import callbacks as events  # noqa: E402
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
from .result import TrainingResult
from .run import Run, run_training
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
    "Run",
    "StatusEvent",
    "StopFlagCallback",
    "TrainingResult",
    "TrainingSpec",
    "events",
    "latest_complete_checkpoint",
    "run_training",
]
