"""What the CLI may do with an output folder an earlier run left behind: resume only when asked, and only the same run.

The CLI writes ``run.json`` into the output folder when training starts (``RecordRun``; a bad spec or bad data
leaves the folder untouched): the spec (without ``output_dir`` and
``resume``) and the SHA-256 of every data file. A later command on the same folder

- with ``--resume`` continues the newest complete checkpoint only when the recorded spec and data hashes equal the
  new ones (otherwise it refuses and names what differs);
- with ``--fresh`` discards the earlier checkpoints and trains from the start in the same folder;
- with neither refuses with a plain message, so running the same example twice never continues the first run by
  accident ("step 6 of 3").
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .callbacks.base import BaseCallback, Event, StatusEvent
from .checkpoints import list_checkpoints
from .errors import ConfigError

RUN_FILE = "run.json"
_NOT_COMPARED = ("output_dir", "resume")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec a run was started with (minus where it writes) and the hashes of its data files, in order."""
    data = spec.get("data") or {}
    files = [*(data.get("train_files") or []), *(data.get("eval_files") or [])]
    hashes = [_sha256(p) if isinstance(p, str) and os.path.isfile(p) else None for p in files]
    return {"spec": {k: v for k, v in spec.items() if k not in _NOT_COMPARED}, "data_sha256": hashes}


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [prefix.rstrip(".") or "spec"]


def earlier_run(out: Path) -> str | None:
    """A short description of what an earlier run left in ``out`` ("checkpoint-5", "a finished model"), or None."""
    checkpoints = list_checkpoints(out)
    if checkpoints:
        return Path(checkpoints[-1][1]).name
    if (out / "final").is_dir() or (out / "result.json").is_file():
        return "a finished model"
    return None


def prepare(spec: dict[str, Any], *, resume: bool, fresh: bool) -> dict[str, Any]:
    """The spec to run (``resume`` set as decided); raises ConfigError when the folder holds another run's work."""
    if resume and fresh:
        raise ConfigError("Choose one of --resume and --fresh.")
    out = Path(str(spec["output_dir"]))
    found = earlier_run(out) if out.is_dir() else None
    decided = False
    if found and resume:
        try:
            recorded = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ConfigError(
                f"The output folder {out.name} holds {found}, but no record of the spec and data it was trained "
                f"with ({RUN_FILE}), so it cannot be checked for resuming. Pass --fresh to start over in it, or "
                "--output to use another folder."
            ) from None
        current = fingerprint(spec)
        differs = _differences(recorded.get("spec"), current["spec"])
        if recorded.get("data_sha256") != current["data_sha256"]:
            differs.append("the data files' contents")
        if differs:
            raise ConfigError(
                f"Cannot resume {found} in {out.name}: this run differs from it in {', '.join(differs)}. Resume "
                "with the same spec and data, pass --fresh to start over in this folder, or --output to use "
                "another folder."
            )
        decided = True
    elif found and not fresh:
        raise ConfigError(
            f"The output folder {out.name} already holds {found} from an earlier run. Pass --resume to continue it "
            "(same spec and data only), --fresh to start over in it, or --output to use another folder."
        )
    return {**spec, "resume": decided}


class RecordRun(BaseCallback):
    """Writes ``run.json`` (the fingerprint) into the output folder once the run starts training."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.written = False

    def on_event(self, event: Event) -> None:
        if self.written or not isinstance(event, StatusEvent) or event.status != "training":
            return
        out = Path(str(self.spec["output_dir"]))
        (out / RUN_FILE).write_text(json.dumps(fingerprint(self.spec), indent=2, sort_keys=True), encoding="utf-8")
        self.written = True
