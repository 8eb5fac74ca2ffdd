"""The Modal app: the engine on Modal's GPUs. The only module that imports `modal`.

`remote_train(payload)` is the entrypoint, run on the GPU container by Modal or, in tests and for debugging, in a
local subprocess (`python -m training.engine.modal_app payload.json`): it downloads the dataset files, base model,
model to continue from and newest checkpoint from the platform's signed internal endpoints (into its own artifact
cache, hash-checked), runs the engine with an HttpCallback (metrics, status back to the platform), uploads every
checkpoint and the final model to the platform's artifact store, and posts the result. Deploy with `modal deploy training/engine/modal_app.py`.

Several GPUs (``hyper.num_processes`` N > 1, spawned as ``<TYPE>:<N>``, e.g. ``H100:4``): the engine runs through its
command line under torchrun in a subprocess (``python -m training.engine.cli SPEC --spec-resume``, as a local worker's
``run_distributed`` does), and rank 0's JSON lines are relayed to the same callbacks (``relay_distributed``). A
signal to the container (SIGTERM/SIGINT) is passed on, so that every rank stops after its current step and rank 0
saves a checkpoint, which is uploaded before the container ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .launch import engine_error_from_stderr, rank0_events

if TYPE_CHECKING:
    from .spec import TrainingSpec

APP_NAME = "finetune-engine"
GPU_TYPES = ("T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100")
TIMEOUT_S = 12 * 3600
DISTRIBUTED_STOP_GRACE_S = 120.0  # stopped ranks save a checkpoint and exit within this, else they are killed
ORPHAN_GRACE_S = 30.0  # after the launcher exits, its remaining processes are killed (torchrun waits 30 s too)


def _download(url: str, target: Path, token: str) -> None:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=120) as resp, open(target, "wb") as out:  # noqa: S310
        while chunk := resp.read(1 << 20):
            out.write(chunk)


def _opener(url: str, token: str) -> Any:
    return lambda: urllib.request.urlopen(  # noqa: S310 (the platform's own endpoint)
        urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}), timeout=120
    )


def _upload(callback_url: str, token: str, folder: str, query: str, work: Path) -> dict[str, Any]:
    """Pack a folder and POST it to the platform's artifact endpoint (which stores it); its answer."""
    from .artifacts import pack_dir

    packed = pack_dir(folder, work)
    try:
        with open(packed.path, "rb") as body:
            req = urllib.request.Request(
                callback_url.rstrip("/") + "/artifact/?" + query,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/x-tar",
                    "Content-Length": str(packed.size),
                    "Authorization": f"Bearer {token}",
                },
            )
            with urllib.request.urlopen(req, timeout=1800) as resp:  # noqa: S310
                return dict(json.loads(resp.read() or b"{}"))
    finally:
        packed.path.unlink(missing_ok=True)


class CheckpointUploader:
    """Engine callback: uploads each checkpoint to the platform's artifact store as it is published (the run waits
    for it), so a preempted run resumes from it on any later attempt."""

    def __init__(self, callback_url: str, token: str, work: Path) -> None:
        self.callback_url, self.token, self.work = callback_url, token, work

    def on_event(self, event: Any) -> None:
        if getattr(event, "type", "") == "checkpoint":
            _upload(self.callback_url, self.token, event.path, f"kind=checkpoint&step={int(event.step)}", self.work)

    def should_stop(self) -> bool:
        return False


class ProcessLost(RuntimeError):
    """A rank of a distributed run died without an engine error of its own (killed, out of host memory): the remote
    call fails, and the platform resumes the job from its last stored checkpoint on another attempt (as it does for
    a container that stops reporting)."""


class RelayedEvent:
    """An engine event read back from rank 0's JSON line, shaped as the callbacks read an ``Event``: its fields as
    attributes (``type``, ``step``, ``path``...) and ``to_dict()``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)


def _snapshot(path: str, into: Path) -> str | None:
    """A private copy of a just-published checkpoint (hard links: no data is copied), so that the upload still has it
    when the engine, which goes on training meanwhile, rotates the folder away; None when it is already gone."""
    target = into / f"relay-{os.getpid()}-{Path(path).name}-{time.monotonic_ns()}"

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another filesystem, or links refused: copy instead
            shutil.copy2(src, dst)

    try:
        into.mkdir(parents=True, exist_ok=True)
        shutil.copytree(path, target, copy_function=link)
    except (OSError, shutil.Error):
        shutil.rmtree(target, ignore_errors=True)
        return None
    return str(target)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def relay_distributed(spec: TrainingSpec, callbacks: list[Any], work: Path) -> tuple[dict[str, Any], int | None]:
    """Run ``spec`` on ``spec.hyper.num_processes`` ranks through the engine's command line under torchrun, feeding
    rank 0's events to ``callbacks`` as the in-process run would; (rank 0's result, the signal that stopped the run
    from outside or None).

    A reader thread takes rank 0's JSON lines as they come and snapshots each published checkpoint at once (the run
    does not wait for its upload, unlike in one process); this thread delivers the events in order (the uploader
    packs the snapshot). A stop asked by a callback (the platform's answer to a cancel: SIGTERM) or a SIGTERM/SIGINT
    to this process (passed on) reaches the launcher once; torchrun passes it to every rank: each stops after the
    current step, rank 0 saves a checkpoint. The launcher's process group is killed after ``DISTRIBUTED_STOP_GRACE_S``.
    Raises ``EngineError`` for what the user can fix and ``ProcessLost`` when a rank died without one."""
    from .callbacks.base import Emitter

    out = Path(spec.output_dir)
    spec_file = out / "distributed-spec.json"
    spec_file.write_text(json.dumps(spec.to_dict()), encoding="utf-8")
    stderr_file = out / "distributed-stderr.log"
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the `training` package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-m", "training.engine.cli", str(spec_file.resolve()), "--spec-resume"]
    emitter = Emitter(callbacks, str(spec.job_id))
    events: queue.Queue[tuple[dict[str, Any], str | None] | None] = queue.Queue()
    result: dict[str, Any] | None = None
    snapshots: list[str] = []
    signalled: int | None = None  # the first SIGTERM/SIGINT this process got
    stop_sent: float | None = None  # when the launcher was asked to stop
    exited = 0.0  # when the launcher was first seen to have exited

    with open(stderr_file, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            command, env=env, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )

        def read() -> None:
            nonlocal result
            assert proc.stdout is not None
            try:
                for event in rank0_events(proc.stdout):
                    if event.get("type") == "result":
                        result = event
                    elif event.get("type") == "checkpoint":
                        snapshot = _snapshot(str(event.get("path") or ""), work)
                        if snapshot is not None:
                            snapshots.append(snapshot)
                        events.put((event, snapshot))
                    else:
                        events.put((event, None))
            finally:
                events.put(None)

        def on_signal(signum: int, _frame: Any) -> None:
            """The first stop (this signal or the platform's) reaches the launcher once: a second signal to it makes
            every rank exit at once without its checkpoint, which only a second signal here should do."""
            nonlocal signalled, stop_sent
            again = signalled is not None
            signalled = signalled or signum
            if proc.poll() is None and (stop_sent is None or again):
                proc.send_signal(signum)
            stop_sent = stop_sent or time.monotonic()

        reader = threading.Thread(target=read, name=f"relay-{spec.job_id}", daemon=True)
        reader.start()
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while True:
                try:
                    item = events.get(timeout=1.0)
                except queue.Empty:
                    item = ()  # type: ignore[assignment]
                if item is None:
                    break
                if item:
                    event, snapshot = item
                    if event.get("type") == "checkpoint":
                        if snapshot is None:
                            emitter.log(
                                "warning",
                                f"the checkpoint of step {event.get('step')} was gone before it could be uploaded",
                            )
                            continue
                        emitter.emit(RelayedEvent({**event, "path": snapshot}))
                        shutil.rmtree(snapshot, ignore_errors=True)
                    else:
                        emitter.emit(RelayedEvent(event))
                if stop_sent is None and emitter.should_stop():
                    stop_sent = time.monotonic()
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)
                elif stop_sent is not None and time.monotonic() - stop_sent > DISTRIBUTED_STOP_GRACE_S:
                    _kill_group(proc)
                if proc.poll() is not None:  # the launcher is done: a rank left behind must not hold the pipe open
                    exited = exited or time.monotonic()
                    if time.monotonic() - exited > ORPHAN_GRACE_S:
                        _kill_group(proc)
            code = proc.wait()
        except BaseException:  # Modal's input cancellation, KeyboardInterrupt: stop every rank, then let it go on
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(DISTRIBUTED_STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
            _kill_group(proc)
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if proc.poll() is None:
                _kill_group(proc)
            reader.join(timeout=5)
            for snapshot in snapshots:
                shutil.rmtree(snapshot, ignore_errors=True)
    if result is not None and code in (0, 130):
        return result, signalled
    error = engine_error_from_stderr(stderr_file)
    if error is not None:
        raise error
    tail = stderr_file.read_text(encoding="utf-8", errors="replace")[-2000:]
    print(f"distributed run ended with exit code {code}:\n{tail}", file=sys.stderr)
    raise ProcessLost(f"a training process stopped (exit code {code})")


def _platform_wants_stop(callback: Any, signum: int) -> bool:
    """After a run stopped by a signal to the container: whether the platform asked for the stop (a cancel, a job
    that is no longer this run's). Says so in the job's log, and reads the endpoint's answer."""
    line = f"the container got signal {signum}: every process stopped after saving a checkpoint"
    callback.post({"events": [{"type": "log", "level": "warning", "line": line}]})
    return bool(callback.should_stop())


def remote_train(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one job from a platform payload: {spec, files: [{url, name}], objects: {role: {url, sha256}},
    callback_url, token, runs_dir?, env?}. Nothing in it is a path on the platform's hosts: data, base model, model to
    continue from and checkpoint come by URL into this container's own cache; checkpoints and the final model go
    back through the artifact endpoint. ``env`` holds the experiment trackers' settings and secrets (the MLflow URI,
    the W&B key): they go into this container's environment, never into the spec."""
    os.environ.update({str(k): str(v) for k, v in (payload.get("env") or {}).items()})

    from .artifacts import MANIFEST, ArtifactCache, ArtifactCorrupt, without_host_paths
    from .callbacks.http import HttpCallback
    from .checkpoints import PREFIX
    from .errors import EngineError
    from .run import run_training
    from .spec import TrainingSpec
    from .tracking import TENSORBOARD_DIR

    token = payload["token"]
    callback_url = payload["callback_url"]
    callback = HttpCallback(callback_url, token)
    runs_root = Path(payload.get("runs_dir") or os.environ.get("FINETUNE_RUNS_DIR") or "/runs")
    spec_dict = dict(payload["spec"])
    out = runs_root / f"job-{spec_dict['job_id']}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh scratch folder per attempt: state comes from the store
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    local: dict[str, str] = {}
    for f in payload.get("files", []):
        target = data_dir / f["name"]
        _download(f["url"], target, token)
        local[f["name"]] = str(target)
    data = dict(spec_dict["data"])
    data["train_files"] = [local[n] for n in payload["train_names"]]
    data["eval_files"] = [local[n] for n in payload.get("eval_names", [])]
    cache = ArtifactCache(runs_root / "cache", int(float(os.environ.get("ARTIFACT_CACHE_MAX_GB", "50")) * (1 << 30)))
    objects = dict(payload.get("objects") or {})
    checkpoints = {role: objects.pop(role) for role in ("checkpoint", "previous_checkpoint") if role in objects}
    try:
        with contextlib.ExitStack() as stack:
            paths = {
                role: str(stack.enter_context(cache.use(obj["sha256"], _opener(obj["url"], token), label=role)))
                for role, obj in objects.items()
            }
            # Both stored checkpoints go into the run folder; one that does not download whole (its hash differs) is
            # left out, and the engine resumes from the newest that loads (checkpoints.py falls back by itself).
            for role, obj in checkpoints.items():
                try:
                    folder = stack.enter_context(cache.use(obj["sha256"], _opener(obj["url"], token), label=role))
                except ArtifactCorrupt as exc:
                    callback.post(
                        {
                            "events": [
                                {
                                    "type": "log",
                                    "level": "warning",
                                    "line": f"the stored {role.replace('_', ' ')} is damaged ({exc}); "
                                    "resuming from another one",
                                }
                            ]
                        }
                    )
                    continue
                shutil.copytree(folder, out / f"{PREFIX}{int(obj['step'])}", ignore=shutil.ignore_patterns(MANIFEST))
            spec = TrainingSpec.from_dict(
                {
                    **spec_dict,
                    "data": data,
                    "output_dir": str(out),
                    "base_model": paths.get("base_model", spec_dict["base_model"]),
                    "init_from": paths.get("init_from", spec_dict.get("init_from")),
                }
            )
            uploader = CheckpointUploader(callback_url, token, runs_root / "packing")
            if spec.hyper.num_processes > 1:  # several GPUs: torchrun in a subprocess, its events relayed here
                result, signalled = relay_distributed(spec, [uploader, callback], runs_root / "packing")
            else:
                result, signalled = run_training(spec, callbacks=[uploader, callback]).to_dict(), None
    except EngineError as exc:
        callback.post({"final": {"status": "failed", "error": str(exc), "kind": getattr(exc, "kind", "engine")}})
        return {"status": "failed", "error": str(exc)}
    except ProcessLost as exc:  # the platform requeues the job at once; it resumes from its last stored checkpoint
        callback.post(
            {
                "events": [{"type": "log", "level": "warning", "line": f"{exc}; the job will resume"}],
                "final": {"status": "interrupted", "error": str(exc)},
            }
        )
        raise
    if signalled is not None and result.get("status") == "cancelled" and not _platform_wants_stop(callback, signalled):
        # Stopped by the container's signal (Modal preempting or shutting it down), not by a cancel: the checkpoint
        # is stored; the platform requeues the job at once and it resumes from that checkpoint. (A container lost
        # without a word is requeued once it has not reported for MODAL_HEARTBEAT_TIMEOUT_S.)
        shutil.rmtree(out, ignore_errors=True)
        reason = f"the Modal container was stopped (signal {signalled})"
        callback.post({"final": {"status": "interrupted", "error": reason}})
        return {**result, "status": "interrupted"}
    final = without_host_paths(result)
    if result.get("model_dir"):
        final["artifact"] = _upload(callback_url, token, result["model_dir"], "kind=final", runs_root / "packing")
    tracking = dict(final.get("tracking") or {})
    events_dir = out / TENSORBOARD_DIR
    if tracking.get("tensorboard") and events_dir.is_dir():  # kept with the run, like a local job's
        stored = _upload(callback_url, token, str(events_dir), "kind=tensorboard", runs_root / "packing")
        tracking["tensorboard_artifact"] = {
            "key": stored["artifact_key"],
            "sha256": stored["artifact_sha256"],
            "size": stored["artifact_size"],
        }
        final["tracking"] = tracking
    callback.post({"final": final})
    shutil.rmtree(out, ignore_errors=True)
    return result


try:  # The Modal definitions; `modal` is optional for everything else in the engine.
    import modal

    # The workers' own locked requirements (the embedded model's package included), so a run trains with exactly
    # the library versions a local worker would: torch first (PyPI's wheel, the CUDA build, as Modal's GPUs need),
    # then the runtime lock, hash-checked and without resolving (README "Dependencies").
    # Inside the Modal container (its image built already) the checkout's files are absent: only the local side reads
    # them.
    _ROOT = Path(__file__).resolve().parents[2]
    _CONSTRAINTS = _ROOT / "constraints.txt"
    _TORCH = (
        next((line.strip() for line in _CONSTRAINTS.read_text().splitlines() if line.startswith("torch==")), "torch")
        if _CONSTRAINTS.is_file()
        else "torch"
    )
    image = (
        modal.Image.debian_slim(python_version="3.11")
        .pip_install(_TORCH)
        .pip_install_from_requirements(str(_ROOT / "requirements.lock"), extra_options="--require-hashes --no-deps")
        .pip_install_from_requirements(
            str(_ROOT / "requirements-nodeps.lock"), extra_options="--require-hashes --no-deps"
        )
        .add_local_python_source("training")
    )
    app = modal.App(APP_NAME)

    def _make(gpu: str) -> Any:
        @app.function(
            image=image, gpu=gpu, timeout=TIMEOUT_S, name=f"train_{gpu.replace('-', '_').lower()}", serialized=True
        )
        def train(payload: dict[str, Any]) -> dict[str, Any]:
            return remote_train(payload)

        return train

    FUNCTIONS = {gpu: _make(gpu) for gpu in GPU_TYPES}
except ImportError:  # pragma: no cover - modal not installed
    app = None
    FUNCTIONS = {}


def main(argv: list[str]) -> int:
    """`python -m training.engine.modal_app payload.json`: run the remote entrypoint in this process."""
    payload = json.loads(Path(argv[0]).read_text())
    result = remote_train(payload)
    print(json.dumps({"status": result.get("status")}))
    return 0 if result.get("status") in ("succeeded", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
