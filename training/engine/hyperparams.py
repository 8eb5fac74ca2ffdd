"""``HyperParams``: the training hyperparameters of a spec, frozen, JSON-safe and validated on construction."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .validators import check_choice, check_float, check_int, check_keys, coerce_float, suggest

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
GRADIENT_CHECKPOINTING_MODES = ("auto", "on", "off")
TRAIN_ON = ("assistant", "all")
PACKING = ("auto", "on", "off")
SHARDING = ("auto", "ddp", "fsdp", "zero3")  # how several processes share the model (see trainers/sharding.py)
REPORT_TO = ("tensorboard", "mlflow", "wandb")
MAX_PROCESSES = 8  # num_processes: GPUs of one host
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
            DPO and KTO: strength of the pull towards the reference model. ORPO: weight of the odds-ratio term.
        loss_type (`str` or `None`, defaults to `None`):
            The preference loss (`spec.LOSS_TYPES`): DPO `sigmoid` (default), `ipo`, `hinge`, `robust`, `sigmoid_norm`
            (SimPO-style length normalisation), ...; KTO `kto` (default) or `apo_zero_unpaired`. Unset for SFT/ORPO.
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
        packing (`str`, defaults to `"auto"`):
            `auto` packs raw text (continued pre-training: documents joined with EOS and cut into `max_length` blocks,
            no row truncated away, loss on every token); `on` packs every SFT dataset the same way (whole rows joined,
            labels kept); `off` truncates each row to `max_length` on its own.
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
        report_to (`list[str]`, defaults to `[]`):
            Experiment trackers to log to, any of `tensorboard` (event files in `<output_dir>/tensorboard/`),
            `mlflow` (the server of `MLFLOW_TRACKING_URI`) and `wandb` (Weights & Biases, key from `WANDB_API_KEY`);
            empty (or `"none"`) logs nowhere. See `training.engine.tracking`.
        num_processes (`int`, defaults to `1`):
            Processes (one per GPU, on one host) training the same model with distributed data parallel (DDP, through
            `torchrun`); each takes `per_device_train_batch_size` rows, so the global batch is batch size x
            accumulation steps x processes. 1 to 8. How the processes hold the model is `sharding`; excludes
            `load_best_model_at_end`. See `training.engine.launch`.
        sharding (`str`, defaults to `"auto"`):
            With several processes: `ddp` gives every process a whole copy of the model (LoRA/QLoRA: only the adapter
            is trained, so copies are cheap); `fsdp` shards weights, gradients and optimizer state across the GPUs
            with PyTorch FSDP2 (through accelerate); `zero3` does the same with DeepSpeed ZeRO stage 3 (needs
            `deepspeed` installed on the worker). `auto` is `fsdp` for full fine-tuning on GPUs and `ddp` otherwise.
            Sharding needs CUDA GPUs (accelerate shards only GPU ranks); CPU ranks use DDP.
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
    loss_type: str | None = None
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
    packing: str = "auto"
    chat_template: str | None = None
    early_stopping_patience: int | None = None
    early_stopping_threshold: float = 0.0
    load_best_model_at_end: bool | None = None
    report_to: tuple[str, ...] = ()
    num_processes: int = 1
    sharding: str = "auto"

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
            coerce_float(self, name)
        check_float("num_train_epochs", self.num_train_epochs, gt=0, le=10_000)
        check_int("max_steps", self.max_steps, 1, 10_000_000, allow=(-1,))
        check_float("learning_rate", self.learning_rate, gt=0, lt=1)
        check_int("per_device_train_batch_size", self.per_device_train_batch_size, 1, 4096)
        check_int("gradient_accumulation_steps", self.gradient_accumulation_steps, 1, 4096)
        check_int("max_length", self.max_length, 8, 1_048_576)
        check_float("warmup_ratio", self.warmup_ratio, ge=0, lt=1)
        check_float("weight_decay", self.weight_decay, ge=0, le=1)
        check_choice("lr_scheduler_type", self.lr_scheduler_type, LR_SCHEDULERS)
        check_int("lora_r", self.lora_r, 1, 4096)
        check_int("lora_alpha", self.lora_alpha, 1, 65_536)
        check_float("lora_dropout", self.lora_dropout, ge=0, lt=1)
        self._check_target_modules()
        check_float("beta", self.beta, gt=0, le=100)
        check_int("seed", self.seed, 0, 2**32 - 1)
        check_float("validation_split", self.validation_split, ge=0, lt=1)
        check_int("max_eval_samples", self.max_eval_samples, 1, 1_000_000)
        check_int("logging_steps", self.logging_steps, 1, 1_000_000)
        check_int("eval_steps", self.eval_steps, 0, 10_000_000)
        check_int("save_steps", self.save_steps, 0, 10_000_000)
        check_int("save_total_limit", self.save_total_limit, 1, 1000)
        check_float("max_grad_norm", self.max_grad_norm, ge=0, le=1e6)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("gradient_checkpointing", self.gradient_checkpointing, GRADIENT_CHECKPOINTING_MODES)
        check_choice("train_on", self.train_on, TRAIN_ON)
        check_choice("packing", self.packing, PACKING)
        check_choice("sharding", self.sharding, SHARDING)
        if self.loss_type is not None and (not isinstance(self.loss_type, str) or not self.loss_type.strip()):
            raise ConfigError(f"loss_type must be a loss name or null, got {self.loss_type!r}.")
        self._check_chat_template()
        self._check_report_to()
        if self.early_stopping_patience is not None:
            check_int("early_stopping_patience", self.early_stopping_patience, 1, 1000)
            if self.eval_steps == 0:
                raise ConfigError(
                    f"early_stopping_patience={self.early_stopping_patience} needs eval_steps > 0 "
                    "(the eval loss is what it watches), got eval_steps=0."
                )
        check_float("early_stopping_threshold", self.early_stopping_threshold, ge=0)
        check_int("num_processes", self.num_processes, 1, MAX_PROCESSES)
        if self.load_best_model_at_end is not None and not isinstance(self.load_best_model_at_end, bool):
            raise ConfigError(
                f"load_best_model_at_end must be true, false or null, got {self.load_best_model_at_end!r}."
            )
        if self.load_best_model_at_end and self.eval_steps == 0:
            raise ConfigError(
                "load_best_model_at_end needs eval_steps > 0 (the best weights are chosen by eval loss), got "
                "eval_steps=0."
            )
        if self.num_processes > 1 and self.keeps_best_model:
            raise ConfigError(
                f"load_best_model_at_end (on by default with early_stopping_patience) is not supported with "
                f"num_processes={self.num_processes} yet; use num_processes=1 or load_best_model_at_end=false."
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

    def _check_report_to(self) -> None:
        value = self.report_to
        if isinstance(value, str):
            value = () if value.strip().lower() in ("", "none") else (value,)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"report_to must be a list of tracker names ({', '.join(REPORT_TO)}), got {value!r}.")
        names = tuple(dict.fromkeys(v.strip().lower() for v in value))
        for name in names:
            if name not in REPORT_TO:
                raise ConfigError(
                    f"report_to: unknown tracker {name!r}{suggest(name, list(REPORT_TO))}; valid: {', '.join(REPORT_TO)}."
                )
        object.__setattr__(self, "report_to", names)

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
        """Sequences per optimizer step (over every process)."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.num_processes

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (lists for tuples)."""
        out = dataclasses.asdict(self)
        if isinstance(self.lora_target_modules, tuple):
            out["lora_target_modules"] = list(self.lora_target_modules)
        out["report_to"] = list(self.report_to)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> HyperParams:
        """Build from a dict (unknown keys are rejected with a suggestion)."""
        data = dict(data or {})
        check_keys(data, cls, "hyperparameter")
        return cls(**data)
