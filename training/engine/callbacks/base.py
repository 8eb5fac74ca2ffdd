"""Events a run emits, the ``Callback`` protocol that receives them, and ready-made callbacks.

Every event is a frozen dataclass whose ``to_dict()`` is JSON-safe and carries ``"type"`` (``metric``, ``eval``,
``status``, ``log``, ``checkpoint``). The web app (``DjangoReporter``), Modal (``HttpCallback``) and the CLI
(``JsonLinesCallback``) all receive the same events.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any, ClassVar, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

STATUSES = (
    "loading_model",
    "preparing_data",
    "training",
    "evaluating",
    "saving",
    "exporting",
    "succeeded",
    "failed",
    "cancelled",
)


def _clean(value: Any) -> Any:
    """NaN/inf become None so the dict stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass(frozen=True)
class Event:
    """Base class: ``to_dict()`` adds the event ``type``."""

    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with a ``type`` key first."""
        return {"type": self.type, **_clean(asdict(self))}


@dataclass(frozen=True)
class MetricEvent(Event):
    """Training progress, emitted every ``logging_steps`` optimizer steps.

    ``loss`` is the mean training loss over the steps since the previous metric event; ``tokens_per_s`` counts real
    (non-padding) tokens fed to the model; ``memory_mb`` is CUDA allocated / MPS allocated / process RSS, with the
    readings in ``memory``.
    """

    type: ClassVar[str] = "metric"
    step: int
    total_steps: int
    epoch: float
    loss: float | None
    learning_rate: float | None
    grad_norm: float | None
    tokens_per_s: float
    samples_per_s: float
    tokens: int
    memory_mb: float
    memory: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    eta_s: float | None = None
    time: float = field(default_factory=time.time)
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalEvent(Event):
    """An evaluation: ``phase`` is ``before`` (base model), ``during`` (every ``eval_steps``) or ``after``."""

    type: ClassVar[str] = "eval"
    step: int
    eval_loss: float | None
    perplexity: float | None
    phase: str
    samples: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class StatusEvent(Event):
    """A phase change (one of ``STATUSES``) with a human-readable message."""

    type: ClassVar[str] = "status"
    status: str
    message: str = ""
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class LogEvent(Event):
    """A log line for the user (warnings such as truncated rows, skipped rows)."""

    type: ClassVar[str] = "log"
    level: str
    line: str
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class CheckpointEvent(Event):
    """A complete (atomically written) checkpoint."""

    type: ClassVar[str] = "checkpoint"
    step: int
    path: str
    time: float = field(default_factory=time.time)


@runtime_checkable
class Callback(Protocol):
    """What ``run_training`` calls: every event, and a cooperative-cancellation poll after each optimizer step."""

    def on_event(self, event: Event) -> None: ...

    def should_stop(self) -> bool: ...


class BaseCallback:
    """Convenience base: ignores events, never stops."""

    def on_event(self, event: Event) -> None:
        """Receive one event."""

    def should_stop(self) -> bool:
        """True to cancel the run (a checkpoint is saved first)."""
        return False


class ListCallback(BaseCallback):
    """Collects events in memory (tests, notebooks)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        """Append the event."""
        self.events.append(event)

    def of_type(self, kind: str) -> list[Event]:
        """The events whose ``type`` is ``kind``."""
        return [e for e in self.events if e.type == kind]

    @property
    def metrics(self) -> list[MetricEvent]:
        """All metric events."""
        return [e for e in self.events if isinstance(e, MetricEvent)]

    @property
    def statuses(self) -> list[str]:
        """The status values in order."""
        return [e.status for e in self.events if isinstance(e, StatusEvent)]


class JsonLinesCallback(BaseCallback):
    """Writes one JSON object per event to a text stream (the CLI's stdout)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        """Write and flush one line."""
        line = json.dumps(event.to_dict(), ensure_ascii=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class StopFlagCallback(BaseCallback):
    """Requests cancellation when a file exists or a ``threading.Event`` is set (e.g. by a signal handler)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, event: threading.Event | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.event = event if event is not None else threading.Event()

    def stop(self) -> None:
        """Request cancellation."""
        self.event.set()

    def should_stop(self) -> bool:
        """True once the flag file exists or the event is set."""
        return self.event.is_set() or (self.path is not None and os.path.exists(self.path))


class Emitter:
    """Fans events out to callbacks; a failing callback is logged, never allowed to kill the run. A ``quiet``
    emitter (the ranks other than 0 of a distributed run) delivers nothing but still polls ``should_stop``."""

    def __init__(self, callbacks: Sequence[Any], job_id: str = "", *, quiet: bool = False) -> None:
        self.callbacks = list(callbacks)
        self.job_id = job_id
        self.quiet = quiet
        self._stop_requested = False

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every callback (to none when quiet)."""
        if self.quiet:
            return
        for cb in self.callbacks:
            try:
                cb.on_event(event)
            except Exception:  # a reporter that fails (network, DB) must not stop training
                logger.exception("job %s: callback %r failed on a %s event", self.job_id, cb, event.type)

    def status(self, status: str, message: str = "") -> None:
        """Emit a status event."""
        logger.info("job %s: %s %s", self.job_id, status, message)
        self.emit(StatusEvent(status=status, message=message))

    def log(self, level: str, line: str) -> None:
        """Emit a log event (and log it)."""
        logger.log(
            logging.getLevelName(level.upper()) if isinstance(level, str) else level, "job %s: %s", self.job_id, line
        )
        self.emit(LogEvent(level=level, line=line))

    def should_stop(self) -> bool:
        """True (and stays True) once any callback asked to stop."""
        if self._stop_requested:
            return True
        for cb in self.callbacks:
            check = getattr(cb, "should_stop", None)
            if check is None:
                continue
            try:
                if check():
                    self._stop_requested = True
                    return True
            except Exception:
                logger.exception("job %s: should_stop of %r failed", self.job_id, cb)
        return False
