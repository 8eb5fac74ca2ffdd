"""A stand-in for `training.runners.modal.ModalClient`: runs the very same remote entrypoint
(`training.engine.modal_app.remote_train`) in a local subprocess instead of a Modal GPU container. Everything else in
the Modal path (payload, signed URLs, the HTTP callback, the internal endpoint, the services) runs unchanged.

Like a container, the subprocess shares no disk with the platform: a fresh working directory and HOME (so its own
Hugging Face and embedded-model caches), and, where the tests run as root, its own mount namespace with an empty
tmpfs over the project's var/ (tests/processes.as_separate_host): a host path in the payload fails the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class SubprocessModalClient:
    def spawn(self, gpu: str, payload: dict[str, Any]) -> str:
        """Start the "container"; the call id names the GPU string Modal was asked for (``fake-H100:2-<pid>``), so a
        test reads it from the job's ``external_id``. On CPU, a run on N processes trains N gloo ranks."""
        fd, path = tempfile.mkstemp(prefix="modal-payload-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
        log = open(path + ".log", "ab")
        log.write(f"gpu={gpu}\n".encode())
        log.flush()
        container = Path(tempfile.mkdtemp(prefix="modal-container-"))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "CELERY_", "POSTGRES_", "FINETUNE_", "HF_", "ARTIFACT_", "TRAINING_"))
        }
        env.update(HOME=str(container / "home"), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
        cmd = [sys.executable, "-m", "training.engine.modal_app", path]
        from tests.processes import as_separate_host, can_isolate_hosts

        if can_isolate_hosts():
            cmd = as_separate_host(cmd, [ROOT / "var"])
        proc = subprocess.Popen(
            cmd, cwd=container, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return f"fake-{gpu}-{proc.pid}"

    def cancel(self, call_id: str) -> None:
        pid = int(call_id.rsplit("-", 1)[1])
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
