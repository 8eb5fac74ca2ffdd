"""Errors the engine raises. Anything a user can fix is an ``EngineError`` subclass."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: a problem the user can act on (bad config, bad data, too little memory)."""

    kind = "engine"


class ConfigError(EngineError):
    """The training spec or one of its fields is invalid."""

    kind = "config"


class DataError(EngineError):
    """The dataset cannot be read or converted; the message names the file and line when known."""

    kind = "data"


class OutOfMemory(EngineError):
    """The run did not fit in the device's memory."""

    kind = "oom"


class ExportError(EngineError):
    """An export failed or its verification found a mismatch."""

    kind = "export"


class Cancelled(EngineError):
    """The run was cancelled cooperatively (a checkpoint was saved first)."""

    kind = "cancelled"


class DiskFull(EngineError):
    """The disk filled up while the run wrote a checkpoint or the final model; what was written before is intact."""

    kind = "disk_full"
