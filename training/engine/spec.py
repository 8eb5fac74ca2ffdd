"""The training spec: frozen, JSON-safe dataclasses validated on construction.

``TrainingSpec.from_dict(spec.to_dict()) == spec`` always holds, and ``json.dumps(spec.to_dict())`` always works, so a
spec can cross to a Celery worker, a Modal function or the CLI unchanged. Every check raises ``ConfigError`` with a
message naming the field and the value (``learning_rate must be > 0 and < 1, got 3``). Checks that need the model or
the data (max_length against the model's context, preference data for DPO/ORPO, bitsandbytes for QLoRA) run in
``run_training`` before anything is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

METHODS = ("sft", "dpo", "orpo")
WEIGHTS = ("full", "lora", "qlora")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
UNSLOTH_MODES = ("auto", "on", "off")
GRADIENT_CHECKPOINTING_MODES = ("auto", "on", "off")
TRAIN_ON = ("assistant", "all")
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "cosine_with_min_lr",
)
EXPORT_FORMATS = ("adapter", "merged", "gguf-f16", "gguf-q8_0")


def _suggest(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _check_keys(data: Mapping[str, Any], cls: type, what: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be an object, got {type(data).__name__}.")
    known = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown {what} '{key}'{_suggest(str(key), known)}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _int(name: str, value: Any, lo: int | None = None, hi: int | None = None, *, allow: tuple[int, ...] = ()) -> None:
    if not _is_int(value):
        raise ConfigError(f"{name} must be an integer, got {value!r}.")
    if value in allow:
        return
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            bounds = f">= {lo}"
        elif lo is None:
            bounds = f"<= {hi}"
        else:
            bounds = f"between {lo} and {hi}"
        extra = f" (or {' or '.join(map(str, allow))})" if allow else ""
        raise ConfigError(f"{name} must be {bounds}{extra}, got {value}.")


def _float(
    name: str,
    value: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> None:
    if not _is_number(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}.")
    parts = []
    ok = True
    if gt is not None:
        parts.append(f"> {gt:g}")
        ok &= value > gt
    if ge is not None:
        parts.append(f">= {ge:g}")
        ok &= value >= ge
    if lt is not None:
        parts.append(f"< {lt:g}")
        ok &= value < lt
    if le is not None:
        parts.append(f"<= {le:g}")
        ok &= value <= le
    if not ok:
        raise ConfigError(f"{name} must be {' and '.join(parts)}, got {value:g}.")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}.")


def _as_float(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if _is_int(value):
        object.__setattr__(obj, name, float(value))


@dataclass(frozen=True)
class HyperParams:
    """Training hyperparameters, named as in Hugging Face ``TrainingArguments`` (the names the web API uses).

    Parameters:
        num_train_epochs (`float`, defaults to `1.0`):
            Passes over the training set; fractions train part of an epoch. Ignored when `max_steps` > 0.
        max_steps (`int`, defaults to `-1`):
            Total optimizer steps; `-1` derives the count from `num_train_epochs`.
        learning_rate (`float`, defaults to `2e-4`):
            Peak learning rate of AdamW. 1e-4 to 3e-4 suits LoRA; full fine-tuning wants ~1e-5 to 5e-5, DPO ~5e-6 to
            5e-5 (full) or ~5e-5 (LoRA).
        per_device_train_batch_size (`int`, defaults to `4`):
            Sequences per forward pass.
        gradient_accumulation_steps (`int`, defaults to `1`):
            Forward passes per optimizer step; effective batch = batch size x accumulation steps.
        max_length (`int`, defaults to `1024`):
            Tokens per sequence; longer rows are cut on the right (their count is reported). Must not exceed the
            model's `max_position_embeddings`.
        warmup_ratio (`float`, defaults to `0.0`):
            Fraction of the total steps over which the learning rate ramps up linearly from 0.
        weight_decay (`float`, defaults to `0.0`):
            AdamW decoupled weight decay.
        lr_scheduler_type (`str`, defaults to `"linear"`):
            One of `linear`, `cosine`, `cosine_with_restarts`, `polynomial`, `constant`, `constant_with_warmup`,
            `inverse_sqrt`, `cosine_with_min_lr` (decays to 10% of the peak).
        lora_r (`int`, defaults to `16`):
            LoRA rank (lora/qlora only).
        lora_alpha (`int`, defaults to `32`):
            LoRA scaling numerator; the update is scaled by `lora_alpha / lora_r`.
        lora_dropout (`float`, defaults to `0.0`):
            Dropout on the LoRA input; 0 is fastest and usually fine for short runs.
        lora_target_modules (`str` or `list[str]`, defaults to `"all-linear"`):
            Module names that get adapters, or `"all-linear"` for every linear layer except the output head.
        beta (`float`, defaults to `0.1`):
            DPO: strength of the pull towards the reference model. ORPO: weight of the odds-ratio term.
        seed (`int`, defaults to `42`):
            Seeds the adapter initialisation, the validation split and the data order (a resumed run sees the same
            batches as an uninterrupted one).
        validation_split (`float`, defaults to `0.05`):
            Fraction of the training rows held out for evaluation when the spec has no `eval_files`; `0` disables
            evaluation unless `eval_files` are given.
        max_eval_samples (`int`, defaults to `64`):
            Cap on evaluation rows (evaluation runs before training, every `eval_steps` and after training).
        logging_steps (`int`, defaults to `1`):
            Emit a metric event every this many optimizer steps.
        eval_steps (`int`, defaults to `0`):
            Evaluate every this many steps during training; `0` evaluates only before and after.
        save_steps (`int`, defaults to `100`):
            Write a resumable checkpoint every this many steps; `0` writes none (cancellation still saves one).
        save_total_limit (`int`, defaults to `2`):
            Keep only the last K complete checkpoints.
        max_grad_norm (`float`, defaults to `1.0`):
            Gradient clipping norm; `0` disables clipping.
        precision (`str`, defaults to `"auto"`):
            `auto` picks the fastest precision the device runs natively (bf16 on CUDA/MPS/CPUs with bf16 units, fp16
            on older CUDA GPUs, fp32 otherwise); `bf16`, `fp16` and `fp32` force one (weights stay fp32, compute is
            autocast).
        gradient_checkpointing (`str`, defaults to `"auto"`):
            `auto` turns it on only when the estimated activations would not fit in memory (always for QLoRA on
            CUDA); it trades ~30% speed for memory.
        train_on (`str`, defaults to `"assistant"`):
            `assistant` trains only the assistant turns (and their end-of-turn token); `all` trains every token.
        chat_template (`str` or `None`, defaults to `None`):
            `None` uses the model's own template; `alpaca`, `chatml`, `llama2`, `completion` or a Jinja string
            override it. The template used is saved with the model.
        early_stopping_patience (`int` or `None`, defaults to `None`):
            Stop after this many evaluations without improvement of the eval loss (needs `eval_steps` > 0).
        early_stopping_threshold (`float`, defaults to `0.0`):
            Minimum eval-loss improvement that resets the patience counter.
        load_best_model_at_end (`bool` or `None`, defaults to `None`):
            Keep the weights of the evaluation with the lowest eval loss as the result (`final/`), like Hugging
            Face's option of the same name; the result metrics name the best step. `None` turns it on exactly when
            `early_stopping_patience` is set. Needs `eval_steps` > 0.
    """

    num_train_epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    lr_scheduler_type: str = "linear"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str | tuple[str, ...] = "all-linear"
    beta: float = 0.1
    seed: int = 42
    validation_split: float = 0.05
    max_eval_samples: int = 64
    logging_steps: int = 1
    eval_steps: int = 0
    save_steps: int = 100
    save_total_limit: int = 2
    max_grad_norm: float = 1.0
    precision: str = "auto"
    gradient_checkpointing: str = "auto"
    train_on: str = "assistant"
    chat_template: str | None = None
    early_stopping_patience: int | None = None
    early_stopping_threshold: float = 0.0
    load_best_model_at_end: bool | None = None

    def __post_init__(self) -> None:
        for name in (
            "num_train_epochs",
            "learning_rate",
            "warmup_ratio",
            "weight_decay",
            "lora_dropout",
            "beta",
            "validation_split",
            "max_grad_norm",
            "early_stopping_threshold",
        ):
            _as_float(self, name)
        _float("num_train_epochs", self.num_train_epochs, gt=0, le=10_000)
        _int("max_steps", self.max_steps, 1, 10_000_000, allow=(-1,))
        _float("learning_rate", self.learning_rate, gt=0, lt=1)
        _int("per_device_train_batch_size", self.per_device_train_batch_size, 1, 4096)
        _int("gradient_accumulation_steps", self.gradient_accumulation_steps, 1, 4096)
        _int("max_length", self.max_length, 8, 1_048_576)
        _float("warmup_ratio", self.warmup_ratio, ge=0, lt=1)
        _float("weight_decay", self.weight_decay, ge=0, le=1)
        _choice("lr_scheduler_type", self.lr_scheduler_type, LR_SCHEDULERS)
        _int("lora_r", self.lora_r, 1, 4096)
        _int("lora_alpha", self.lora_alpha, 1, 65_536)
        _float("lora_dropout", self.lora_dropout, ge=0, lt=1)
        self._check_target_modules()
        _float("beta", self.beta, gt=0, le=100)
        _int("seed", self.seed, 0, 2**32 - 1)
        _float("validation_split", self.validation_split, ge=0, lt=1)
        _int("max_eval_samples", self.max_eval_samples, 1, 1_000_000)
        _int("logging_steps", self.logging_steps, 1, 1_000_000)
        _int("eval_steps", self.eval_steps, 0, 10_000_000)
        _int("save_steps", self.save_steps, 0, 10_000_000)
        _int("save_total_limit", self.save_total_limit, 1, 1000)
        _float("max_grad_norm", self.max_grad_norm, ge=0, le=1e6)
        _choice("precision", self.precision, PRECISIONS)
        _choice("gradient_checkpointing", self.gradient_checkpointing, GRADIENT_CHECKPOINTING_MODES)
        _choice("train_on", self.train_on, TRAIN_ON)
        self._check_chat_template()
        if self.early_stopping_patience is not None:
            _int("early_stopping_patience", self.early_stopping_patience, 1, 1000)
            if self.eval_steps == 0:
                raise ConfigError(
                    f"early_stopping_patience={self.early_stopping_patience} needs eval_steps > 0 "
                    "(the eval loss is what it watches), got eval_steps=0."
                )
        _float("early_stopping_threshold", self.early_stopping_threshold, ge=0)
        if self.load_best_model_at_end is not None and not isinstance(self.load_best_model_at_end, bool):
            raise ConfigError(f"load_best_model_at_end must be true, false or null, got {self.load_best_model_at_end!r}.")
        if self.load_best_model_at_end and self.eval_steps == 0:
            raise ConfigError(
                "load_best_model_at_end needs eval_steps > 0 (the best weights are chosen by eval loss), got "
                "eval_steps=0."
            )

    @property
    def keeps_best_model(self) -> bool:
        """Whether the run keeps the lowest-eval-loss weights as its result."""
        if self.load_best_model_at_end is not None:
            return self.load_best_model_at_end
        return self.early_stopping_patience is not None

    def _check_target_modules(self) -> None:
        value = self.lora_target_modules
        if isinstance(value, str):
            if not value.strip():
                raise ConfigError("lora_target_modules must be 'all-linear' or a list of module names, got ''.")
            return
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v.strip() for v in value):
            object.__setattr__(self, "lora_target_modules", tuple(value))
            return
        raise ConfigError(
            f"lora_target_modules must be 'all-linear' or a non-empty list of module names, got {value!r}."
        )

    def _check_chat_template(self) -> None:
        value = self.chat_template
        if value is None:
            return
        if not isinstance(value, str):
            raise ConfigError(f"chat_template must be a template name or a Jinja string, got {value!r}.")
        from .data.templates import CHAT_TEMPLATES

        key = value.strip().lower()
        if key in ("", "auto"):
            object.__setattr__(self, "chat_template", None)
        elif key in CHAT_TEMPLATES:
            object.__setattr__(self, "chat_template", key)
        elif not ("{{" in value or "{%" in value):
            names = ", ".join(["auto", *CHAT_TEMPLATES])
            raise ConfigError(f"chat_template must be one of {names} or a Jinja string, got {value!r}.")

    @property
    def effective_batch_size(self) -> int:
        """Sequences per optimizer step."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (lists for tuples)."""
        out = dataclasses.asdict(self)
        if isinstance(self.lora_target_modules, tuple):
            out["lora_target_modules"] = list(self.lora_target_modules)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> HyperParams:
        """Build from a dict (unknown keys are rejected with a suggestion)."""
        data = dict(data or {})
        _check_keys(data, cls, "hyperparameter")
        return cls(**data)


@dataclass(frozen=True)
class DataSpec:
    """Where the training data lives and how to read it.

    Parameters:
        train_files (`tuple[str, ...]`):
            Local paths (JSON, JSON Lines, CSV/TSV, Parquet; optionally gzipped). Relative paths are resolved by the
            caller (the CLI resolves them against the working directory, then the spec file's folder).
        format (`str` or `None`, defaults to `None`):
            `alpaca`, `sharegpt`, `messages`, `prompt_completion`, `text`, `preference`, `hh_rlhf`,
            `sharegpt_preference`; `None` detects it from the first rows.
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
                    f"{_suggest(key, names)}."
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
            _int("limit", self.limit, 1)

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
        _check_keys(data, cls, "data field")
        if "train_files" not in data:
            raise ConfigError("data.train_files is required.")
        return cls(**dict(data))


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
        _choice("method", self.method, METHODS)
        _choice("weights", self.weights, WEIGHTS)
        _choice("use_unsloth", self.use_unsloth, UNSLOTH_MODES)
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
                    f"export_formats: unknown format {fmt!r}{_suggest(str(fmt), list(EXPORT_FORMATS))}; "
                    f"valid: {', '.join(EXPORT_FORMATS)}."
                )
        object.__setattr__(self, "export_formats", tuple(dict.fromkeys(formats)))
        _int("compare_prompts", self.compare_prompts, 0, 100)
        if self.method in ("dpo", "orpo") and self.hyper.train_on == "all":
            raise ConfigError(f"train_on='all' applies to SFT only; {self.method} trains on the responses.")

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
        _check_keys(data, cls, "spec field")
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
