"""Run events and the callbacks that receive them (the contract shared by the web app, Modal and the CLI)."""

from __future__ import annotations

from .base import (
    STATUSES,
    BaseCallback,
    Callback,
    CheckpointEvent,
    Emitter,
    EvalEvent,
    Event,
    JsonLinesCallback,
    ListCallback,
    LogEvent,
    MetricEvent,
    StatusEvent,
    StopFlagCallback,
)

__all__ = [
    "STATUSES",
    "BaseCallback",
    "Callback",
    "CheckpointEvent",
    "Emitter",
    "EvalEvent",
    "Event",
    "JsonLinesCallback",
    "ListCallback",
    "LogEvent",
    "MetricEvent",
    "StatusEvent",
    "StopFlagCallback",
]
