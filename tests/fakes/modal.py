"""A stand-in for `training.runners.modal.ModalClient`: runs the very same remote entrypoint
(`training.engine.modal_app.remote_train`) in a local subprocess instead of a Modal GPU container. Everything else in
the Modal path (payload, signed URLs, the HTTP callback, the internal endpoint, the services) runs unchanged."""

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
        fd, path = tempfile.mkstemp(prefix="modal-payload-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
        log = open(path + ".log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
        proc = subprocess.Popen([sys.executable, "-m", "training.engine.modal_app", path], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return f"fake-{gpu}-{proc.pid}"

    def cancel(self, call_id: str) -> None:
        pid = int(call_id.rsplit("-", 1)[1])
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
