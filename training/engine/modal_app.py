"""The Modal app: the engine on Modal's GPUs. The only module that imports `modal`.

`remote_train(payload)` is the entrypoint, run on the GPU container by Modal or, in tests and for debugging, in a
local subprocess (`python -m training.engine.modal_app payload.json`): it downloads the dataset files, base model,
model to continue from and newest checkpoint from the platform's signed internal endpoints (into its own artifact
cache, hash-checked), runs the engine with an HttpCallback (metrics, status back to the platform), uploads every
checkpoint and the final model to the platform's artifact store, and posts the result. Deploy with `modal deploy training/engine/modal_app.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

APP_NAME = "finetune-engine"
GPU_TYPES = ("T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100")
TIMEOUT_S = 12 * 3600


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


def remote_train(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one job from a platform payload: {spec, files: [{url, name}], objects: {role: {url, sha256}},
    callback_url, token, runs_dir?, env?}. Nothing in it is a path on the platform's hosts: data, base model, model to
    continue from and checkpoint come by URL into this container's own cache; checkpoints and the final model go
    back through the artifact endpoint. ``env`` holds the experiment trackers' settings and secrets (the MLflow URI,
    the W&B key): they go into this container's environment, never into the spec."""
    import shutil

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
            result = run_training(spec, callbacks=[uploader, callback]).to_dict()
    except EngineError as exc:
        callback.post({"final": {"status": "failed", "error": str(exc), "kind": getattr(exc, "kind", "engine")}})
        return {"status": "failed", "error": str(exc)}
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
