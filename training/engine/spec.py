"""The training spec: frozen, JSON-safe dataclasses validated on construction.

``TrainingSpec.from_dict(spec.to_dict()) == spec`` always holds, and ``json.dumps(spec.to_dict())`` always works, so a
spec can cross to a Celery worker, a Modal function or the CLI unchanged. Every check raises ``ConfigError`` with a
message naming the field and the value (``learning_rate must be > 0 and < 1, got 3``). Checks that need the model or
the data (max_length against the model's context, preference data for DPO/ORPO, bitsandbytes for QLoRA) run in
``run_training`` before anything is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .hyperparams import GRADIENT_CHECKPOINTING_MODES, LR_SCHEDULERS, PRECISIONS, TRAIN_ON, HyperParams
from .validators import check_choice, check_int, check_keys, suggest

__all__ = [
    "EXPORT_FORMATS",
    "GRADIENT_CHECKPOINTING_MODES",
    "LOSS_TYPES",
    "LR_SCHEDULERS",
    "METHODS",
    "PRECISIONS",
    "TRAIN_ON",
    "UNSLOTH_MODES",
    "WEIGHTS",
    "DataSpec",
    "check_method_hyperparams",
    "HyperParams",
    "TrainingSpec",
]

METHODS = ("sft", "dpo", "orpo", "kto")
WEIGHTS = ("full", "lora", "qlora")
UNSLOTH_MODES = ("auto", "on", "off")
EXPORT_FORMATS = ("adapter", "merged", "gguf-f16", "gguf-q8_0", "gguf-q6_k", "gguf-q5_k_m", "gguf-q4_k_m")
# The losses TRL offers per preference method (`hyper.loss_type`; unset = the first). DPO's include IPO
# ("ipo"), hinge (SLiC), robust DPO, BCO, SPPO, NCA, EXO, APO and SimPO-like length-normalised sigmoid
# ("sigmoid_norm"); KTO's the KTO loss and APO-zero for unpaired data (no KL term, any batch size).
LOSS_TYPES: dict[str, tuple[str, ...]] = {
    "dpo": (
        "sigmoid",
        "ipo",
        "hinge",
        "robust",
        "bco_pair",
        "sppo_hard",
        "nca_pair",
        "exo_pair",
        "apo_zero",
        "apo_down",
        "aot",
        "aot_unpaired",
        "discopop",
        "sigmoid_norm",
    ),
    "kto": ("kto", "apo_zero_unpaired"),
}


@dataclass(frozen=True)
class DataSpec:
    """Where the training data lives and how to read it.

    Parameters:
        train_files (`tuple[str, ...]`):
            Local paths (JSON, JSON Lines, CSV/TSV, Parquet; optionally gzipped). Relative paths are resolved by the
            caller (the CLI resolves them against the working directory, then the spec file's folder).
        format (`str` or `None`, defaults to `None`):
            `alpaca`, `sharegpt`, `messages`, `prompt_completion`, `text`, `preference`, `hh_rlhf`,
            `sharegpt_preference`, `kto`, `sharegpt_tools`, `messages_tools` (tool calling); `None` detects it from
            the first rows.
        column_mapping (`dict[str, str]` or `None`, defaults to `None`):
            Canonical column -> source column (dotted paths allowed), applied before format detection.
        eval_files (`tuple[str, ...]`, defaults to `()`):
            Held-out files in the same format; when given, `validation_split` is not used.
        limit (`int` or `None`, defaults to `None`):
            Read at most this many training examples (useful for smoke runs).
    """

    train_files: tuple[str, ...]
    format: str | None = None
    column_mapping: dict[str, str] | None = None
    eval_files: tuple[str, ...] = ()
    limit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_files", self._paths("train_files", self.train_files, required=True))
        object.__setattr__(self, "eval_files", self._paths("eval_files", self.eval_files, required=False))
        if self.format is not None:
            if not isinstance(self.format, str):
                raise ConfigError(f"format must be a format name or null, got {self.format!r}.")
            from .data.formats import DatasetFormat

            key = self.format.strip().lower()
            names = [f.value for f in DatasetFormat]
            if key in ("", "auto"):
                object.__setattr__(self, "format", None)
            elif key not in names:
                raise ConfigError(
                    f"format must be one of {', '.join(names)} (or null to detect it), got {self.format!r}"
                    f"{suggest(key, names)}."
                )
            else:
                object.__setattr__(self, "format", key)
        if self.column_mapping is not None:
            cm = self.column_mapping
            if not isinstance(cm, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in cm.items()
            ):
                raise ConfigError(f"column_mapping must map column names to column names, got {cm!r}.")
            object.__setattr__(self, "column_mapping", dict(cm) or None)
        if self.limit is not None:
            check_int("limit", self.limit, 1)

    @staticmethod
    def _paths(name: str, value: Any, *, required: bool) -> tuple[str, ...]:
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"{name} must be a list of file paths, got {value!r}.")
        if required and not value:
            raise ConfigError(f"{name} must name at least one file.")
        return tuple(value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "train_files": list(self.train_files),
            "format": self.format,
            "column_mapping": dict(self.column_mapping) if self.column_mapping else None,
            "eval_files": list(self.eval_files),
            "limit": self.limit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataSpec:
        """Build from a dict (unknown keys are rejected with a suggestion)."""
        check_keys(data, cls, "data field")
        if "train_files" not in data:
            raise ConfigError("data.train_files is required.")
        return cls(**dict(data))


def check_method_hyperparams(method: str, hyper: HyperParams) -> None:
    """The hyperparameter rules that depend on the method (``ConfigError`` naming the field)."""
    if method != "sft" and hyper.train_on == "all":
        raise ConfigError(f"train_on='all' applies to SFT only; {method} trains on the responses.")
    if method != "sft" and hyper.packing == "on":
        raise ConfigError(f"packing applies to SFT only; {method} keeps each example whole.")
    losses = LOSS_TYPES.get(method, ())
    if hyper.loss_type is not None and hyper.loss_type not in losses:
        choices = f"one of: {', '.join(losses)}" if losses else "left unset (it has one loss)"
        raise ConfigError(f"loss_type {hyper.loss_type!r} does not apply to {method}; choose {choices}.")
    if method == "kto" and hyper.per_device_train_batch_size < 2 and hyper.loss_type != ("apo_zero_unpaired"):
        raise ConfigError(
            "KTO needs per_device_train_batch_size of at least 2: its KL term compares each answer "
            "with another one of the same batch."
        )


@dataclass(frozen=True)
class TrainingSpec:
    """Everything one training run needs; the only input of ``run_training``.

    Parameters:
        job_id (`str`):
            Caller's id for the run; appears in every log line and in the result.
        base_model (`str`):
            A local Hugging Face model folder, a Hub id, or `embedded/SmolLM2-135M-Instruct` (the bundled model).
        data (`DataSpec`):
            Training (and optional evaluation) data.
        method (`str`):
            `sft` (supervised fine-tuning), `dpo` or `orpo` (preference data).
        weights (`str`):
            `lora` (adapter on a frozen model), `qlora` (adapter on a 4-bit model; needs bitsandbytes) or `full`.
        hyper (`HyperParams`):
            Hyperparameters.
        output_dir (`str`):
            Run folder: checkpoints (`checkpoint-<step>`), the final model (`final/`), exports (`exports/`) and
            `result.json`.
        resume (`bool`, defaults to `True`):
            Continue from the newest complete checkpoint in `output_dir` if there is one (same data order, same
            final step).
        init_from (`str` or `None`, defaults to `None`):
            Start from a finished model instead of `base_model`'s weights: a PEFT adapter folder (trained further) or
            a full model folder ("continue training" with more epochs).
        use_unsloth (`str`, defaults to `"auto"`):
            `auto` uses Unsloth when it is installed, supports the method/weights and is faster on the device (on CPU
            it was measured slower, so `auto` does not pick it there); `on` requires it; `off` never imports it.
        export_formats (`tuple[str, ...]`, defaults to `()`):
            Artifacts to produce after training: `adapter`, `merged`, `gguf-f16`, `gguf-q8_0`.
        compare_prompts (`int`, defaults to `0`):
            After training, answer this many held-out prompts with the base and the fine-tuned model side by side.
    """

    job_id: str
    base_model: str
    data: DataSpec
    method: str
    weights: str
    hyper: HyperParams
    output_dir: str
    resume: bool = True
    init_from: str | None = None
    use_unsloth: str = "auto"
    export_formats: tuple[str, ...] = ()
    compare_prompts: int = 0

    def __post_init__(self) -> None:
        for name in ("job_id", "base_model", "output_dir"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name} must be a non-empty string, got {value!r}.")
        if isinstance(self.data, Mapping):
            object.__setattr__(self, "data", DataSpec.from_dict(self.data))
        if not isinstance(self.data, DataSpec):
            raise ConfigError(f"data must be a DataSpec, got {type(self.data).__name__}.")
        if isinstance(self.hyper, Mapping):
            object.__setattr__(self, "hyper", HyperParams.from_dict(self.hyper))
        if not isinstance(self.hyper, HyperParams):
            raise ConfigError(f"hyper must be HyperParams, got {type(self.hyper).__name__}.")
        check_choice("method", self.method, METHODS)
        check_choice("weights", self.weights, WEIGHTS)
        check_choice("use_unsloth", self.use_unsloth, UNSLOTH_MODES)
        if not isinstance(self.resume, bool):
            raise ConfigError(f"resume must be true or false, got {self.resume!r}.")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise ConfigError(f"init_from must be a model folder or null, got {self.init_from!r}.")
        formats = self.export_formats
        if isinstance(formats, str):
            formats = (formats,)
        if not isinstance(formats, (list, tuple)):
            raise ConfigError(f"export_formats must be a list, got {formats!r}.")
        for fmt in formats:
            if fmt not in EXPORT_FORMATS:
                raise ConfigError(
                    f"export_formats: unknown format {fmt!r}{suggest(str(fmt), list(EXPORT_FORMATS))}; "
                    f"valid: {', '.join(EXPORT_FORMATS)}."
                )
        object.__setattr__(self, "export_formats", tuple(dict.fromkeys(formats)))
        check_int("compare_prompts", self.compare_prompts, 0, 100)
        check_method_hyperparams(self.method, self.hyper)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; ``TrainingSpec.from_dict(spec.to_dict()) == spec``."""
        return {
            "job_id": self.job_id,
            "base_model": self.base_model,
            "data": self.data.to_dict(),
            "output_dir": self.output_dir,
            "method": self.method,
            "weights": self.weights,
            "hyper": self.hyper.to_dict(),
            "resume": self.resume,
            "init_from": self.init_from,
            "use_unsloth": self.use_unsloth,
            "export_formats": list(self.export_formats),
            "compare_prompts": self.compare_prompts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingSpec:
        """Build from a dict (nested ``data`` and ``hyper`` dicts; unknown keys rejected with a suggestion)."""
        check_keys(data, cls, "spec field")
        values = dict(data)
        for name in ("job_id", "base_model", "data", "method", "weights", "output_dir"):
            if name not in values:
                raise ConfigError(f"{name} is required in the training spec.")
        values["data"] = DataSpec.from_dict(values["data"])
        values["hyper"] = HyperParams.from_dict(values.get("hyper"))
        return cls(**values)

    def replace(self, **changes: Any) -> TrainingSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
