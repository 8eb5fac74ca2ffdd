"""The Modal app: the engine on Modal's GPUs. The only module that imports `modal`.

`remote_train(payload)` is the entrypoint, run on the GPU container by Modal or, in tests and for debugging, in a
local subprocess (`python -m training.engine.modal_app payload.json`): it downloads the dataset files from the
platform's signed URLs, runs the engine with an HttpCallback (metrics, status, checkpoints back to the platform),
uploads the final model as a tar.gz and posts the result. Deploy with `modal deploy training/engine/modal_app.py`.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

APP_NAME = "finetune-engine"
GPU_TYPES = ("T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100")
VOLUME_NAME = "finetune-runs"
TIMEOUT_S = 12 * 3600


def _download(url: str, target: Path, token: str) -> None:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=120) as resp, open(target, "wb") as out:  # noqa: S310
        while chunk := resp.read(1 << 20):
            out.write(chunk)


def _tar_dir(path: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(path, arcname="final")
    return buf.getvalue()


def remote_train(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one job from a platform payload: {spec, files: [{url, name}], callback_url, token, runs_dir?}."""
    from .callbacks.http import HttpCallback
    from .errors import EngineError
    from .run import run_training
    from .spec import TrainingSpec

    token = payload["token"]
    callback = HttpCallback(payload["callback_url"], token)
    runs_root = Path(payload.get("runs_dir") or os.environ.get("FINETUNE_RUNS_DIR") or "/runs")
    spec_dict = dict(payload["spec"])
    out = runs_root / f"job-{spec_dict['job_id']}"
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    local: dict[str, str] = {}
    for f in payload.get("files", []):
        target = data_dir / f["name"]
        if not target.exists():
            _download(f["url"], target, token)
        local[f["name"]] = str(target)
    data = dict(spec_dict["data"])
    data["train_files"] = [local[n] for n in payload["train_names"]]
    data["eval_files"] = [local[n] for n in payload.get("eval_names", [])]
    spec = TrainingSpec.from_dict({**spec_dict, "data": data, "output_dir": str(out)})
    try:
        result = run_training(spec, callbacks=[callback]).to_dict()
    except EngineError as exc:
        callback.post({"final": {"status": "failed", "error": str(exc), "kind": getattr(exc, "kind", "engine")}})
        return {"status": "failed", "error": str(exc)}
    if result.get("model_dir"):
        req = urllib.request.Request(
            payload["callback_url"].rstrip("/") + "/artifact/", data=_tar_dir(result["model_dir"]), method="POST",
            headers={"Content-Type": "application/gzip", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(req, timeout=600):  # noqa: S310
            pass
    callback.post({"final": result})
    return result


try:  # The Modal definitions; `modal` is optional for everything else in the engine.
    import modal

    image = (
        modal.Image.debian_slim(python_version="3.11")
        .pip_install("torch==2.13.0", "transformers==5.23.0", "peft==0.21.2", "trl==1.16.0", "datasets==5.2.0",
                     "accelerate==1.15.0", "bitsandbytes==0.50.2", "safetensors==0.8.0", "pyarrow")
        .add_local_python_source("training")
    )
    app = modal.App(APP_NAME)
    volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)

    def _make(gpu: str) -> Any:
        @app.function(image=image, gpu=gpu, timeout=TIMEOUT_S, volumes={"/runs": volume},
                      name=f"train_{gpu.replace('-', '_').lower()}", serialized=True)
        def train(payload: dict[str, Any]) -> dict[str, Any]:
            result = remote_train(payload)
            volume.commit()
            return result

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
