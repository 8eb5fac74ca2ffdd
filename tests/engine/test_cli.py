"""``python -m training.engine.cli``: JSON lines on stdout, exit codes (0 / 2 / 130), path resolution, and the shipped
example specs running as they are."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from training.engine.checkpoints import latest_complete_checkpoint
from training.engine.cli import load_spec_dict

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "training" / "engine" / "examples"


def run_cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training.engine.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def parse(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_example_specs_are_valid_and_resolve_their_data_from_the_repo_root() -> None:
    from training.engine import TrainingSpec

    for name in ("lora_sft.json", "dpo.json"):
        data = load_spec_dict(str(EXAMPLES / name))
        spec = TrainingSpec.from_dict(data)
        assert all(os.path.isfile(p) for p in spec.data.train_files), spec.data.train_files
        assert os.path.isabs(spec.output_dir)


def test_relative_paths_fall_back_to_the_spec_folder(tmp_path: Path, short_alpaca: Path, monkeypatch: Any) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "rows.json").write_bytes(short_alpaca.read_bytes())
    (folder / "s.json").write_text(
        json.dumps(
            {"job_id": "1", "base_model": "embedded", "output_dir": "out", "data": {"train_files": ["rows.json"]}}
        )
    )
    monkeypatch.chdir(tmp_path)
    data = load_spec_dict(str(folder / "s.json"), max_steps=3, output="elsewhere", no_unsloth=True)
    assert data["data"]["train_files"] == [str(folder / "rows.json")]
    assert data["output_dir"] == str(tmp_path / "elsewhere")
    assert data["hyper"]["max_steps"] == 3 and data["use_unsloth"] == "off"


def test_cli_runs_the_lora_example_and_prints_json_lines(tmp_path: Path, model_path: str) -> None:
    proc = run_cli(str(EXAMPLES / "lora_sft.json"), "--max-steps", "1", "--output", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = parse(proc.stdout)  # every stdout line is JSON: nothing else leaks into it
    metrics = [e for e in lines if e["type"] == "metric"]
    assert [m["step"] for m in metrics] == [1] and all(m["loss"] > 0 for m in metrics)
    assert {"status", "eval", "log"} <= {e["type"] for e in lines}
    result = lines[-1]
    assert result["type"] == "result" and result["status"] == "succeeded" and result["final_step"] == 1
    assert Path(result["model_dir"], "adapter_model.safetensors").is_file()
    # The same command again does not continue the finished run ("step 2 of 1"): it refuses, and says what to do.
    again = run_cli(str(EXAMPLES / "lora_sft.json"), "--max-steps", "1", "--output", str(tmp_path / "run"))
    assert again.returncode == 2 and again.stdout == ""
    error = json.loads(again.stderr.strip().splitlines()[-1])
    assert error["kind"] == "config" and "already holds checkpoint-1" in error["message"], error
    assert "--resume" in error["message"] and "--fresh" in error["message"]
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["spec"]["hyper"]["max_steps"] == 1 and all(recorded["data_sha256"])


def test_cli_runs_the_dpo_example(tmp_path: Path, model_path: str) -> None:
    proc = run_cli(str(EXAMPLES / "dpo.json"), "--max-steps", "1", "--output", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = parse(proc.stdout)
    assert [m["step"] for m in lines if m["type"] == "metric"] == [1]
    assert lines[-1]["status"] == "succeeded" and lines[-1]["data"]["format"] == "hh_rlhf"


def test_cli_bad_spec_exits_2_with_a_json_error(tmp_path: Path) -> None:
    spec = {
        "job_id": "1",
        "base_model": "embedded",
        "method": "sft",
        "weights": "lora",
        "output_dir": str(tmp_path / "out"),
        "data": {"train_files": ["x.json"]},
        "hyper": {"learning_rate": 3},
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    proc = run_cli(str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    error = json.loads(proc.stderr.strip().splitlines()[-1])
    assert error["kind"] == "config" and "learning_rate must be > 0 and < 1, got 3" in error["message"]
    assert not (tmp_path / "out").exists()


def test_cli_unreadable_spec_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    proc = run_cli(str(path))
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr


def test_sigterm_cancels_cooperatively_with_a_checkpoint_and_exit_130(
    tmp_path: Path, short_alpaca: Path, model_path: str
) -> None:
    spec = {
        "job_id": "sig",
        "base_model": "embedded/SmolLM2-135M-Instruct",
        "method": "sft",
        "weights": "lora",
        "output_dir": str(tmp_path / "run"),
        "data": {"train_files": [str(short_alpaca)]},
        "use_unsloth": "off",
        "hyper": {
            "max_steps": 50,
            "max_length": 96,
            "per_device_train_batch_size": 2,
            "save_steps": 0,
            "validation_split": 0.0,
        },
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.engine.cli", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        if lines[-1]["type"] == "metric":
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=600)
    lines += parse(rest)
    assert proc.returncode == 130
    result = lines[-1]
    assert result["type"] == "result" and result["status"] == "cancelled"
    stopped_at = result["final_step"]
    assert 1 <= stopped_at <= 2
    assert latest_complete_checkpoint(spec["output_dir"]) == str(Path(spec["output_dir"]) / f"checkpoint-{stopped_at}")


@pytest.mark.parametrize("flag", ["--help"])
def test_cli_help(flag: str) -> None:
    proc = run_cli(flag, timeout=120)
    assert proc.returncode == 0 and "--max-steps" in proc.stdout


def _earlier_run(tmp_path: Path, data_file: Path) -> dict[str, Any]:
    """A spec and an output folder holding its complete checkpoint-5 and its run.json, as a first run leaves them."""
    from training.engine.checkpoints import write_checkpoint
    from training.engine.output_folder import RUN_FILE, fingerprint

    spec = {
        "job_id": "r",
        "base_model": "embedded",
        "output_dir": str(tmp_path / "out"),
        "data": {"train_files": [str(data_file)]},
        "hyper": {"max_steps": 8},
    }
    write_checkpoint(spec["output_dir"], 5, lambda d: Path(d, "adapter_model.safetensors").write_bytes(b"x"))
    Path(spec["output_dir"], RUN_FILE).write_text(json.dumps(fingerprint(spec)))
    return spec


def test_an_earlier_run_is_resumed_only_when_asked_and_only_with_the_same_spec_and_data(tmp_path: Path) -> None:
    from training.engine.errors import ConfigError
    from training.engine.output_folder import prepare

    data_file = tmp_path / "rows.json"
    data_file.write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}]))
    spec = _earlier_run(tmp_path, data_file)
    with pytest.raises(ConfigError, match="already holds checkpoint-5 from an earlier run. Pass --resume"):
        prepare(spec, resume=False, fresh=False)
    assert prepare(spec, resume=True, fresh=False)["resume"] is True
    assert prepare(spec, resume=False, fresh=True)["resume"] is False
    longer = {**spec, "hyper": {"max_steps": 3}}
    with pytest.raises(
        ConfigError, match=r"Cannot resume checkpoint-5 in out: this run differs from it in hyper\.max_steps"
    ):
        prepare(longer, resume=True, fresh=False)
    data_file.write_text(json.dumps([{"instruction": "changed", "input": "", "output": "b"}]))
    with pytest.raises(ConfigError, match="differs from it in the data files' contents"):
        prepare(spec, resume=True, fresh=False)
    (tmp_path / "out" / "run.json").unlink()
    with pytest.raises(ConfigError, match="no record of the spec and data"):
        prepare(spec, resume=True, fresh=False)
    with pytest.raises(ConfigError, match="Choose one of --resume and --fresh"):
        prepare(spec, resume=True, fresh=True)


def test_a_new_output_folder_needs_no_flag(tmp_path: Path) -> None:
    from training.engine.output_folder import prepare

    spec = {"job_id": "n", "base_model": "embedded", "output_dir": str(tmp_path / "new"), "data": {"train_files": []}}
    assert prepare(spec, resume=False, fresh=False)["resume"] is False
    assert not (tmp_path / "new").exists()  # nothing is written before the run starts training
