"""What a method trainer works with: the run's context, and the reports its phases return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.engine.callbacks.base import Emitter
    from training.engine.device import DeviceInfo
    from training.engine.spec import TrainingSpec


@dataclass
class RunContext:
    """What a method trainer gets from ``run_training``."""

    spec: TrainingSpec
    device: DeviceInfo
    model_path: str  # resolved folder (or Hub id) of the base model
    emitter: Emitter
    use_unsloth: bool = False
    tokenizer: Any = None
    chat_template: str | None = None  # the resolved Jinja template, saved with the model
    init_path: str | None = None  # resolved ``spec.init_from``

    @property
    def job_id(self) -> str:
        """The spec's job id (for log lines)."""
        return self.spec.job_id


@dataclass
class DataReport:
    """What the data preparation found; goes into ``TrainingResult.data``."""

    format: str
    rows: int
    train_rows: int
    eval_rows: int
    row_errors: int
    truncated: int
    dropped: int  # rows left out (nothing trainable after truncation, or a prompt that fills max_length)
    sha256: str
    trained_tokens: int | None = None
    total_tokens: int | None = None
    files: tuple[str, ...] = ()
    first_row_errors: list[str] = field(default_factory=list)
    packed_blocks: int | None = None  # the max_length blocks the rows were packed into (None: not packed)
    labels: dict[str, float] | None = None  # KTO: desirable/undesirable training rows and the loss weights

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "format": self.format,
            "rows": self.rows,
            "train_rows": self.train_rows,
            "eval_rows": self.eval_rows,
            "row_errors": self.row_errors,
            "truncated": self.truncated,
            "dropped": self.dropped,
            "sha256": self.sha256,
            "trained_tokens": self.trained_tokens,
            "total_tokens": self.total_tokens,
            "files": list(self.files),
            "first_row_errors": list(self.first_row_errors),
            "packed_blocks": self.packed_blocks,
            "labels": self.labels,
        }


@dataclass
class TrainOutcome:
    """What ``MethodTrainer.train`` returns."""

    final_step: int
    total_steps: int
    cancelled: bool
    early_stopped: bool
