"""The best weights seen so far (lowest eval loss), kept in ``output_dir/best/`` so they can become the result.

Only the trainable parameters are kept (the adapter for LoRA/QLoRA, every weight for a full fine-tune), written
atomically (a temporary folder renamed into place) so a crash never leaves a half-written snapshot. ``best.json``
names the step and the eval loss, so a resumed run knows the best it has to beat.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

BEST_DIR = "best"
STATE_FILE = "best.json"
WEIGHTS_FILE = "weights.pt"


def trainable_state(model: Any) -> dict[str, Any]:
    """CPU copies of the model's trainable parameters, by name."""
    return {
        name: param.detach().to("cpu").contiguous().clone()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def save_best(model: Any, folder: str | os.PathLike[str], *, step: int, eval_loss: float) -> None:
    """Replace the snapshot in ``folder`` with the model's trainable weights at ``step``."""
    import torch

    final = Path(folder)
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    torch.save(trainable_state(model), tmp / WEIGHTS_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({"step": int(step), "eval_loss": float(eval_loss)}))
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def read_best(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``{"step", "eval_loss"}`` of the snapshot in ``folder``, or None when there is none."""
    path = Path(folder) / STATE_FILE
    if not path.is_file() or not (Path(folder) / WEIGHTS_FILE).is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return {"step": int(data["step"]), "eval_loss": float(data["eval_loss"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def restore_best(model: Any, folder: str | os.PathLike[str]) -> None:
    """Copy the snapshot's weights back into the model (same names and shapes as when it was saved)."""
    import torch

    state = torch.load(Path(folder) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    params = dict(model.named_parameters())
    missing = [name for name in state if name not in params]
    if missing:
        raise RuntimeError(f"best snapshot does not match the model: {len(missing)} unknown tensors ({missing[0]})")
    with torch.no_grad():
        for name, tensor in state.items():
            target = params[name]
            target.copy_(tensor.to(device=target.device, dtype=target.dtype))


def discard_best(folder: str | os.PathLike[str]) -> None:
    """Remove a snapshot (a fresh run must not inherit an earlier run's best)."""
    shutil.rmtree(folder, ignore_errors=True)
