"""Several processes (distributed data parallel) through ``torchrun``: the launcher and the rank helpers.

``python -m training.engine.cli SPEC --nproc N`` (or a spec whose ``hyper.num_processes`` is N > 1) re-runs the same
command under ``torchrun --standalone --nproc_per_node N`` (``torch.distributed.run``); each rank runs the engine, and
the Hugging Face Trainer (accelerate) joins the process group torchrun describes in the environment (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``...; gloo on CPU, NCCL on CUDA). No process group is made here.

Only rank 0 reports: its JSON lines reach stdout, it writes checkpoints, ``final/`` and ``result.json``; the other
ranks train and join every collective (evaluation, the per-step cancellation vote) but emit nothing.

Exit status: torchrun ends every rank when one fails (a rank killed by SIGKILL included) and exits non-zero; the
launcher then exits with rank 0's own code when rank 0 recorded one (2 engine error, 130 cancelled), else with
torchrun's. SIGINT/SIGTERM to the launcher are passed to torchrun, which passes them to every rank (each stops
cooperatively after the current step; torchrun kills a rank that has not exited 30 s later).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

EXIT_CODE_FILE_ENV = "FINETUNE_EXIT_CODE_FILE"  # where rank 0 writes its exit code for the launcher


def world_size() -> int:
    """Processes in this run (``WORLD_SIZE`` set by torchrun; 1 outside it)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def rank() -> int:
    """This process's global rank (0 outside torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def local_world_size() -> int:
    """Processes of this run on this host (they share its CPU cores)."""
    try:
        return max(int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size()))), 1)
    except ValueError:
        return 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single-process run): the rank that reports, saves and uploads."""
    return rank() == 0


def is_distributed() -> bool:
    """True when this process is one rank of several."""
    return world_size() > 1


def _group_ready() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is always installed with the engine
        return False
    return dist.is_available() and dist.is_initialized()


def _vote_device() -> Any:
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any of them (a collective: every rank must call it at the same
    point). Keeps the ranks in step when one of them is asked to stop. Without a process group: ``flag``."""
    if not _group_ready():
        return flag
    import torch
    import torch.distributed as dist

    vote = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_vote_device())
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


def sum_ranks(values: list[int]) -> list[int]:
    """Element-wise sums of ``values`` over every rank (a collective); ``values`` without a process group."""
    if not _group_ready():
        return values
    import torch
    import torch.distributed as dist

    total = torch.tensor(values, dtype=torch.int64, device=_vote_device())
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return [int(v) for v in total.tolist()]


def broadcast_from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a collective; the value itself without a process group)."""
    if not _group_ready():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, device=_vote_device())
    return box[0]


def torchrun_command(cli_args: list[str], nproc: int) -> list[str]:
    """The ``torchrun`` command that runs ``python -m training.engine.cli *cli_args`` on ``nproc`` local ranks."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "training.engine.cli",
        *cli_args,
    ]


def launch(cli_args: list[str], nproc: int, *, stdout: IO[str] | None = None) -> int:
    """Run the CLI on ``nproc`` ranks under torchrun and wait; the exit code (see the module docstring). The ranks
    write to ``stdout`` (rank 0's JSON lines; this process's stdout when None) and inherit stderr."""
    fd, code_file = tempfile.mkstemp(prefix="finetune-exit-", suffix=".txt")
    os.close(fd)
    env = {**os.environ, EXIT_CODE_FILE_ENV: code_file}
    sys.stdout.flush()
    proc = subprocess.Popen(  # noqa: S603 (our own interpreter)
        torchrun_command(cli_args, nproc), env=env, stdout=stdout if stdout is not None else sys.stdout
    )

    def forward(signum: int, _frame: Any) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    try:
        with open(code_file, encoding="utf-8") as fh:
            text = fh.read().strip()
        recorded = int(text) if text else None
    except (OSError, ValueError):
        recorded = None
    finally:
        try:
            os.unlink(code_file)
        except OSError:
            pass
    if code == 0:
        return 0
    return recorded if recorded else (code if code > 0 else 1)


def record_exit_code(code: int) -> None:
    """Rank 0 tells the launcher its own exit code (torchrun's is 1 for any failing rank)."""
    path = os.environ.get(EXIT_CODE_FILE_ENV)
    if not path or not is_main_process():
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(str(code))
    except OSError:
        pass


def engine_error_from_stderr(stderr_file: str | os.PathLike[str]) -> Exception | None:
    """The ``EngineError`` rank 0 of a launched run printed on stderr (one JSON object with ``"type": "error"``, the
    CLI's error line), with its ``kind``; None when there is none (a crash, a killed rank)."""
    import json

    from .errors import EngineError

    try:
        with open(stderr_file, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if not line.startswith("{"):
            continue
        try:
            payload = json.loads(line)
        except ValueError:
            continue
        if isinstance(payload, dict) and payload.get("type") == "error":
            error = EngineError(str(payload.get("message") or "training failed"))
            error.kind = str(payload.get("kind") or "engine")  # type: ignore[attr-defined]
            return error
    return None


def rank0_events(stream: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON-lines events rank 0 of a launched run prints on stdout (the CLI's ``JsonLinesCallback``), in order;
    anything else on the stream (a library's print) is skipped."""
    import json

    for line in stream:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event
