"""Checkpoint faults in the engine: a disk that fills up while a checkpoint is written (a real ENOSPC from a small
tmpfs in a mount namespace of its own) and a damaged newest checkpoint (resume falls back to the one before)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from training.engine import ListCallback, run_training
from training.engine.checkpoints import (
    MARKER,
    latest_complete_checkpoint,
    list_checkpoints,
    write_checkpoint,
)

ROOT = Path(__file__).resolve().parents[2]


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


# --- disk full ---------------------------------------------------------------------------------------------------

# Runs in its own mount namespace with a 1 MiB tmpfs over `out`: checkpoint 2 (100 KB) fits, checkpoint 4 (model
# weights through safetensors and the optimizer through torch.save, as the HF trainer writes them) does not.
_FILL_THE_DISK = r"""
import json, sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from training.engine.checkpoints import write_checkpoint
from training.engine.errors import EngineError

out = Path(sys.argv[1])
write_checkpoint(out, 2, lambda d: Path(d, "adapter_model.safetensors").write_bytes(b"w" * 100_000))


def big(folder):
    save_file({"w": torch.zeros(256 * 1024)}, f"{folder}/adapter_model.safetensors")
    torch.save({"state": torch.zeros(256 * 1024)}, f"{folder}/optimizer.pt")


report = {}
try:
    write_checkpoint(out, 4, big)
except BaseException as exc:
    report = {"error": type(exc).__name__, "is_engine_error": isinstance(exc, EngineError), "message": str(exc),
              "kind": getattr(exc, "kind", "")}
report["left"] = sorted(p.name for p in out.iterdir())
report["kept"] = (out / "checkpoint-2" / "adapter_model.safetensors").read_bytes() == b"w" * 100_000
print(json.dumps(report))
"""


@pytest.mark.skipif(not _can_mount(), reason="a private tmpfs needs root and unshare")
def test_disk_full_while_writing_a_checkpoint_is_a_clear_engine_error_and_frees_the_partial_folder(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'mount -t tmpfs -o size=1m tmpfs "$1" && exec "{sys.executable}" -c "$2" "$1"',
            "sh",
            str(out),
            _FILL_THE_DISK,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report.get("is_engine_error"), report  # not a traceback from safetensors or torch
    assert report["kind"] == "disk_full"
    message = report["message"]
    assert message.startswith("No space left on the device while saving the checkpoint of step 4"), message
    assert "free" in message and "step 2" in message  # how much is free, and what is still there to resume from
    assert str(tmp_path) not in message and "/" not in message.replace("N/A", "")  # no server path
    assert report["left"] == ["checkpoint-2"]  # the partial checkpoint-4.tmp was removed: its space is free again
    assert report["kept"]


# --- a damaged newest checkpoint ---------------------------------------------------------------------------------


def _checkpoint(root: Path, step: int) -> str:
    import torch
    from safetensors.torch import save_file

    def writer(folder: str) -> None:
        save_file({"w": torch.ones(64)}, f"{folder}/adapter_model.safetensors")
        torch.save({"state": torch.ones(8)}, f"{folder}/optimizer.pt")
        Path(folder, "trainer_state.json").write_text(json.dumps({"global_step": step}))

    return write_checkpoint(root, step, writer)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", ["truncated weights", "truncated optimizer", "missing file", "bad json"])
def test_a_damaged_checkpoint_is_reported_and_an_intact_one_is_not(tmp_path: Path, damage: str) -> None:
    from training.engine.checkpoints import checkpoint_problem

    good = Path(_checkpoint(tmp_path, 2))
    bad = Path(_checkpoint(tmp_path, 4))
    if damage == "truncated weights":
        _truncate(bad / "adapter_model.safetensors")
    elif damage == "truncated optimizer":
        _truncate(bad / "optimizer.pt")
    elif damage == "missing file":
        (bad / "optimizer.pt").unlink()
    else:
        (bad / "trainer_state.json").write_text('{"global_step": ')
    assert checkpoint_problem(good) is None
    problem = checkpoint_problem(bad)
    assert problem and str(tmp_path) not in problem
    assert latest_complete_checkpoint(tmp_path) == str(bad)  # complete (it has its marker), yet not loadable


def test_the_marker_records_each_file_and_its_size(tmp_path: Path) -> None:
    path = Path(_checkpoint(tmp_path, 2))
    files = json.loads((path / MARKER).read_text())["files"]
    assert files == {
        name: (path / name).stat().st_size
        for name in ("adapter_model.safetensors", "optimizer.pt", "trainer_state.json")
    }


def _spec(make_spec: Any, out: Path, data: Path) -> Any:
    return make_spec(
        out,
        data,
        hyper={
            "max_steps": 4,
            "save_steps": 2,
            "save_total_limit": 2,
            "per_device_train_batch_size": 2,
            "max_length": 64,
        },
    )


def test_resume_falls_back_to_the_checkpoint_before_when_the_newest_does_not_load(
    tmp_path: Path, make_spec: Any, short_alpaca: Path, model_path: str
) -> None:
    spec = _spec(make_spec, tmp_path / "out", short_alpaca)
    first = run_training(spec)
    assert first.status == "succeeded"
    assert [s for s, _ in list_checkpoints(spec.output_dir)] == [2, 4]
    _truncate(Path(spec.output_dir, "checkpoint-4", "adapter_model.safetensors"))  # a disk that lost the tail

    events = ListCallback()
    again = run_training(spec, [events])

    assert again.status == "succeeded" and again.final_step == 4
    assert [m.step for m in events.metrics] == [3, 4]  # resumed from step 2, not from scratch
    warnings = [e.line for e in events.of_type("log") if e.level == "warning"]
    assert any("checkpoint of step 4" in w and "step 2" in w for w in warnings), warnings
    assert all(str(tmp_path) not in w for w in warnings)
    # The damaged folder is gone and step 4 was written again from the resumed run.
    from training.engine.checkpoints import checkpoint_problem

    assert checkpoint_problem(Path(spec.output_dir, "checkpoint-4")) is None
