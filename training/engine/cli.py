"""``python -m training.engine.cli spec.json [--max-steps N] [--output DIR] [--resume | --fresh] [--no-unsloth]
[--nproc N]``

Runs one training spec and prints one JSON object per event on stdout (metric lines carry ``loss``), the last line
being the result (``"type": "result"``). Everything else (library chatter, logs) goes to stderr.

Exit codes: 0 succeeded; 2 an ``EngineError`` (bad spec, bad data, out of memory; the error is printed on stderr as
one JSON object); 130 cancelled (SIGINT/SIGTERM ask the run to stop cooperatively: it saves a checkpoint within one
step, and the same command with ``--resume`` continues it); 1 an unexpected error (traceback on stderr). A second
signal exits at once.

An output folder that already holds an earlier run's checkpoints or model is resumed only with ``--resume``, and only
when that run had the same spec and data (``output_folder.py``); ``--fresh`` starts over in it; with neither the
command refuses (exit 2) instead of continuing another run by accident.

Relative paths in the spec (data files, a local base model, ``init_from``) are resolved against the working directory
first, then against the spec file's folder; a relative ``output_dir`` is relative to the working directory.

Several processes (``--nproc N``, or ``hyper.num_processes`` N > 1 in the spec): the command checks the spec, then runs
itself on N ranks under ``torchrun`` (``launch.py``); only rank 0 prints JSON lines, and the exit code is rank 0's
(any rank failing, a killed one included, ends the run with a non-zero code).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import IO, Any

from . import output_folder
from .callbacks.base import JsonLinesCallback, StopFlagCallback
from .errors import EngineError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_ENGINE_ERROR = 2
EXIT_CANCELLED = 130


def _resolve(path: str, spec_dir: Path) -> str:
    if os.path.isabs(path):
        return path
    for base in (Path.cwd(), spec_dir):
        candidate = (base / path).resolve()
        if candidate.exists():
            return str(candidate)
    return str((Path.cwd() / path).resolve())


def load_spec_dict(
    path: str,
    *,
    max_steps: int | None = None,
    output: str | None = None,
    no_unsloth: bool = False,
    num_processes: int | None = None,
) -> dict[str, Any]:
    """Read a spec file, resolve its relative paths and apply the command-line overrides."""
    spec_path = Path(path)
    try:
        data = json.loads(spec_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EngineError(f"Cannot read the spec file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise EngineError(f"The spec file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EngineError(f"The spec file {path} must hold a JSON object.")
    spec_dir = spec_path.resolve().parent
    files = data.get("data")
    if isinstance(files, dict):
        files = dict(files)
        for key in ("train_files", "eval_files"):
            value = files.get(key)
            if isinstance(value, str):
                value = [value]
            if isinstance(value, list):
                files[key] = [_resolve(p, spec_dir) if isinstance(p, str) else p for p in value]
        data["data"] = files
    for key in ("base_model", "init_from"):
        value = data.get(key)
        if isinstance(value, str) and (value.startswith(".") or os.sep in value):
            resolved = _resolve(value, spec_dir)
            if os.path.exists(resolved):
                data[key] = resolved
    if output is not None:
        data["output_dir"] = output
    if isinstance(data.get("output_dir"), str) and not os.path.isabs(data["output_dir"]):
        data["output_dir"] = str((Path.cwd() / data["output_dir"]).resolve())
    if max_steps is not None:
        hyper = dict(data.get("hyper") or {})
        hyper["max_steps"] = max_steps
        data["hyper"] = hyper
    if num_processes is not None and isinstance(data.get("hyper", {}), dict):
        data["hyper"] = {**(data.get("hyper") or {}), "num_processes": num_processes}
    if no_unsloth:
        data["use_unsloth"] = "off"
    return data


def _json_stdout() -> IO[str]:
    """A private handle on the real stdout for JSON lines; fd 1 is pointed at stderr so that anything else
    printed (by us, by libraries, by C code) cannot corrupt the stream."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less ``--nproc N`` / ``--nproc=N`` (the ranks must not launch again)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    from . import launch

    code = _main(argv)
    launch.record_exit_code(code)
    return code


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.engine.cli", description="Run one training spec.")
    parser.add_argument("spec", help="path to a TrainingSpec JSON file")
    parser.add_argument("--max-steps", type=int, default=None, help="override hyper.max_steps")
    parser.add_argument("--output", default=None, help="override output_dir")
    parser.add_argument("--no-unsloth", action="store_true", help="never use Unsloth (use_unsloth='off')")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest checkpoint in the output folder (same spec and data only)",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="discard the output folder's earlier checkpoints and train from the start"
    )
    parser.add_argument("--stop-file", default=None, help="cancel cooperatively when this file appears")
    parser.add_argument(
        "--spec-resume",
        action="store_true",
        help="resume exactly as the spec's 'resume' field says, without the output folder check (for callers that "
        "prepare the folder themselves, such as the platform's runner)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="train on N local processes (GPUs) with torchrun (overrides hyper.num_processes)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="INFO logs on stderr")
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw_argv)

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    out = _json_stdout()
    stop = threading.Event()
    signals = {"count": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            os._exit(EXIT_CANCELLED)
        stop.set()
        print(
            json.dumps(
                {"type": "log", "level": "warning", "line": f"signal {signum}: stopping after the current step"}
            ),
            file=sys.stderr,
        )

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    from . import launch
    from .run import run_training
    from .spec import TrainingSpec

    try:
        ranks = launch.world_size() if launch.is_distributed() else args.nproc
        data = load_spec_dict(
            args.spec, max_steps=args.max_steps, output=args.output, no_unsloth=args.no_unsloth, num_processes=ranks
        )
        checked = TrainingSpec.from_dict(data)  # a bad spec is refused before the output folder is looked at
        if not args.spec_resume:
            data = output_folder.prepare(data, resume=args.resume, fresh=args.fresh)
        if checked.hyper.num_processes > 1 and not launch.is_distributed():
            nproc = checked.hyper.num_processes
            return launch.launch(_without_nproc(raw_argv), nproc, stdout=out)
        spec = TrainingSpec.from_dict(data)
        if launch.is_main_process():
            callbacks = [JsonLinesCallback(out), StopFlagCallback(args.stop_file, stop), output_folder.RecordRun(data)]
        else:  # the other ranks train and vote on stopping; rank 0 reports
            callbacks = [StopFlagCallback(args.stop_file, stop)]
        result = run_training(spec, callbacks)
    except EngineError as exc:
        print(
            json.dumps(
                {
                    "type": "error",
                    "kind": getattr(exc, "kind", "engine"),
                    "error": type(exc).__name__,
                    "message": str(exc),
                }
            ),
            file=sys.stderr,
        )
        return EXIT_ENGINE_ERROR
    if launch.is_main_process():
        out.write(json.dumps(result.to_dict()) + "\n")
        out.flush()
    return EXIT_CANCELLED if result.status == "cancelled" else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
