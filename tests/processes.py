"""Real server processes for tests: a Celery worker and daphne, on the test database and the test Redis numbers."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent


T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:port (fail early if `proc` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def server_env(db_name: str, **extra: str) -> dict[str, str]:
    """Environment for a subprocess that must share the test database and the test Redis numbers."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "finetune.settings",
            "FINETUNE_TESTING": "1",
            "POSTGRES_DB": db_name,
            "DEBUG": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


def can_isolate_hosts() -> bool:
    """True when processes can be given a private view of folders (root, with unshare): a simulated host."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def as_separate_host(cmd: list[str], private_dirs: list[Path]) -> list[str]:
    """`cmd` run in its own mount namespace with an empty tmpfs over each of `private_dirs`: it sees none of the
    files other processes (other "hosts") keep there, and they see none of its own."""
    mounts = " && ".join(
        f"mkdir -p {shlex.quote(str(d))} && mount -t tmpfs tmpfs {shlex.quote(str(d))}" for d in private_dirs
    )
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "host", *cmd]


def start_celery_worker(
    env: dict[str, str],
    log_path: Path,
    *,
    queues: str = "default,training",
    name: str | None = None,
    private_dirs: list[Path] | None = None,
    broker_url: str | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `celery worker` and wait until it answers a ping; returns (process, node name). With `private_dirs`
    the worker runs as a separate host (as_separate_host); `broker_url`: the broker it uses when `env` names
    another one than this process's (the ping goes there)."""
    node = name or f"test-{uuid.uuid4().hex[:8]}@localhost"
    log = open(log_path, "ab")
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "finetune",
        "worker",
        "-Q",
        queues,
        "-c",
        "1",
        "-n",
        node,
        "--without-mingle",
        "--without-gossip",
        "-l",
        "INFO",
    ]
    proc = subprocess.Popen(
        as_separate_host(cmd, private_dirs) if private_dirs else cmd,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    from celery import Celery

    from finetune.celery import app

    # A pinger of its own for another broker (control's `connection=` misses replies). Never the current app: a
    # Celery app made current here would send this process's later tasks to that broker, after it is gone.
    pinger = Celery("ping", broker=broker_url, set_as_current=False) if broker_url else app
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {proc.returncode}; see {log_path}")
            if pinger.control.ping(destination=[node], timeout=0.5):
                return proc, node
    finally:
        if pinger is not app:
            pinger.close()
    proc.kill()
    raise TimeoutError(f"celery worker {node} did not answer a ping in 90 s; see {log_path}")


def start_daphne(
    env: dict[str, str], log_path: Path, *, workers: int = 1, extra_args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the web tier the way `make run` does (`python -m finetune.serve`: daphne workers on one socket) on a
    free port and wait until it answers HTTP; returns (supervisor process, port)."""
    port = free_port()
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "finetune.serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            *extra_args,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port(port, proc)
    wait_for_http(f"http://127.0.0.1:{port}/api/health/", proc)
    return proc, port


def wait_for_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 90.0) -> None:
    """Wait until `url` answers with any HTTP status (the socket accepts before the workers are ready)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=10):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Terminate a process (and its children), killing it if it does not stop in time."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 15)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=5)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop in its own thread.

    `asyncio.run` refuses to start when the calling thread already has a running loop (Playwright's sync API keeps
    one running while a browser is open), so tests never call it directly."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def torchrun_ranks(cmdline_marker: str) -> dict[int, int]:
    """{rank: pid} of the live torchrun rank processes whose command line contains ``cmdline_marker`` (a job's spec
    path), read from /proc."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline_marker.encode() not in cmdline or not any(v.startswith(b"TORCHELASTIC_RUN_ID=") for v in environ):
            continue
        for value in environ:
            if value.startswith(b"RANK="):
                found[int(value[len(b"RANK=") :])] = int(entry)
    return found
