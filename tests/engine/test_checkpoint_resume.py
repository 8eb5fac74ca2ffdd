"""Atomic checkpoints (marker written last, incomplete folders ignored and cleaned, keep-last-K) and a real crash:
the CLI is SIGKILLed after a checkpoint, resumed, and must reach the same final step with the same data order and
losses as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from training.engine import ListCallback, TrainingSpec, run_training
from training.engine.checkpoints import (
    MARKER,
    clean_incomplete,
    is_complete,
    latest_complete_checkpoint,
    list_checkpoints,
    rotate_checkpoints,
    write_checkpoint,
)

ROOT = Path(__file__).resolve().parents[2]


def _write(files: dict[str, str]) -> Any:
    def writer(folder: str) -> None:
        for name, text in files.items():
            Path(folder, name).write_text(text)

    return writer


def test_checkpoint_is_published_with_its_marker(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path, 3, _write({"weights.bin": "w"}))
    assert path == str(tmp_path / "checkpoint-3") and is_complete(path)
    assert json.loads((tmp_path / "checkpoint-3" / MARKER).read_text())["step"] == 3
    assert not (tmp_path / "checkpoint-3.tmp").exists()


def test_a_crash_while_writing_leaves_no_complete_checkpoint(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, 2, _write({"w": "ok"}))

    def dies(folder: str) -> None:
        Path(folder, "w").write_text("half")
        raise KeyboardInterrupt  # the process dies mid-write

    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(tmp_path, 4, dies)
    assert latest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    (tmp_path / "checkpoint-6").mkdir()  # a folder that lost its marker (e.g. half-deleted)
    assert latest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    removed = clean_incomplete(tmp_path)
    assert sorted(Path(p).name for p in removed) == ["checkpoint-4.tmp", "checkpoint-6"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]


def test_rotation_keeps_the_last_k_and_never_the_newest(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        write_checkpoint(tmp_path, step, _write({"w": str(step)}))
    rotate_checkpoints(tmp_path, 2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [6, 8]
    rotate_checkpoints(tmp_path, 0)  # a limit below 1 still keeps the newest
    assert [s for s, _ in list_checkpoints(tmp_path)] == [8]


def test_saving_the_same_step_again_replaces_it_atomically(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, 5, _write({"w": "first"}))
    write_checkpoint(tmp_path, 5, _write({"w": "second"}))
    assert (tmp_path / "checkpoint-5" / "w").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-5"]


# --- a real crash ------------------------------------------------------------------------------------------------

STEPS = 4
KILL_AFTER = 2


def _spec(make_spec: Any, out: Path, data: Path) -> TrainingSpec:
    return make_spec(
        out,
        data,
        hyper={
            "max_steps": STEPS,
            "save_steps": 2,
            "save_total_limit": 3,
            "per_device_train_batch_size": 2,
            "max_length": 96,
        },
    )


def _cli(spec_file: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "training.engine.cli", str(spec_file), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_sigkill_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path, make_spec: Any, short_alpaca: Path, model_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One thread count for this process and the CLI's: the engine otherwise measures which is fastest when a run
    # starts, and on a loaded machine the two runs chose differently and their bf16 sums rounded 1e-3 apart.
    import torch

    monkeypatch.setenv("FINETUNE_CPU_THREADS", str(torch.get_num_threads()))
    reference = ListCallback()
    ref_result = run_training(_spec(make_spec, tmp_path / "reference", short_alpaca), [reference])
    ref_losses = {m.step: m.loss for m in reference.metrics}
    assert ref_result.final_step == STEPS and sorted(ref_losses) == list(range(1, STEPS + 1))

    spec = _spec(make_spec, tmp_path / "crash", short_alpaca)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    proc = _cli(spec_file)
    crashed: list[dict[str, Any]] = []
    deadline = time.monotonic() + 600
    assert proc.stdout is not None
    for line in proc.stdout:
        crashed.append(json.loads(line))
        if crashed[-1]["type"] == "checkpoint" and crashed[-1]["step"] >= KILL_AFTER:
            os.kill(proc.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "no checkpoint in time"
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    resume_step = max(s for s, _ in list_checkpoints(spec.output_dir))
    assert resume_step >= KILL_AFTER and not (Path(spec.output_dir) / "final").exists()

    proc = _cli(spec_file, "--resume")
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in out.splitlines()]
    result = lines[-1]
    assert result["type"] == "result" and result["status"] == "succeeded" and result["final_step"] == STEPS
    resumed = {e["step"]: e["loss"] for e in lines if e["type"] == "metric"}
    assert sorted(resumed) == list(range(resume_step + 1, STEPS + 1))
    before_crash = {e["step"]: e["loss"] for e in crashed if e["type"] == "metric"}
    # Same data order and same weights: every step's loss matches the uninterrupted run.
    for step, loss in {**before_crash, **resumed}.items():
        assert loss == pytest.approx(ref_losses[step], rel=1e-4, abs=1e-4), (step, loss, ref_losses[step])
