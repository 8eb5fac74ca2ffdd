"""``TrainingResult``, what ``run_training`` returns, and the library versions it records."""

from __future__ import annotations

import importlib.metadata
import json
import sys
from dataclasses import dataclass, field
from typing import Any

_LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "safetensors",
    "bitsandbytes",
    "unsloth",
)


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of ``run_training`` (JSON-safe via ``to_dict``).

    ``status`` is ``succeeded`` or ``cancelled`` (failures raise). ``metrics`` holds train_loss_first/last,
    eval_loss_before/after, perplexity_before/after, tokens_per_s_mean, peak_memory_mb, train_runtime_s, early_stopped,
    and with ``load_best_model_at_end`` best_step, best_eval_loss, best_model_restored (``final/`` then holds the
    lowest-eval-loss weights). ``model_dir`` is ``output_dir/final`` (None when cancelled); ``checkpoint`` the newest
    complete checkpoint. ``tracking`` says where ``hyper.report_to`` logged (``training.engine.tracking``).
    """

    job_id: str
    status: str
    final_step: int
    total_steps: int
    metrics: dict[str, Any]
    model_dir: str | None
    output_dir: str
    artifacts: tuple[dict[str, Any], ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    message: str = ""
    comparison: dict[str, Any] | None = None
    duration_s: float = 0.0
    tracking: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        out = {
            "type": "result",
            "job_id": self.job_id,
            "status": self.status,
            "final_step": self.final_step,
            "total_steps": self.total_steps,
            "metrics": dict(self.metrics),
            "model_dir": self.model_dir,
            "output_dir": self.output_dir,
            "artifacts": [dict(a) for a in self.artifacts],
            "data": dict(self.data),
            "versions": dict(self.versions),
            "device": dict(self.device),
            "checkpoint": self.checkpoint,
            "message": self.message,
            "comparison": self.comparison,
            "duration_s": self.duration_s,
            "tracking": dict(self.tracking),
        }
        return json.loads(json.dumps(out, default=str))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingResult:
        """Inverse of ``to_dict``."""
        values = {k: v for k, v in data.items() if k != "type"}
        values["artifacts"] = tuple(values.get("artifacts") or ())
        return cls(**values)


def library_versions() -> dict[str, str]:
    """Installed versions of the ML stack (without importing it)."""
    out = {"python": sys.version.split()[0]}
    for name in _LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
