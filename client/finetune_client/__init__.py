"""Python client for the finetune platform: `Client(url, token)` and the `finetune` command.

from finetune_client import Client

with Client("http://127.0.0.1:8000", "<API token>") as fc:
    job = fc.jobs.wait(fc.jobs.create({...})["id"])
"""

from __future__ import annotations

from .client import Client, Datasets, Exports, Jobs, Models, OllamaImports, Pushes
from .errors import ApiError, AuthError, ConnectionFailed, FinetuneError, TaskFailed, WaitTimeout
from .watch import JobWatcher

__version__ = "0.1.0"
__all__ = [
    "ApiError",
    "AuthError",
    "Client",
    "ConnectionFailed",
    "Datasets",
    "Exports",
    "FinetuneError",
    "JobWatcher",
    "Jobs",
    "Models",
    "OllamaImports",
    "Pushes",
    "TaskFailed",
    "WaitTimeout",
    "__version__",
]
