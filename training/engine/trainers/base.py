"""What every method trainer shares: model/tokenizer loading (full, LoRA, QLoRA, ``init_from``), Trainer arguments,
atomic checkpointing, real-token counting, OOM translation and the method registry."""

from __future__ import annotations

import logging
import math
import os
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from training.engine.errors import ConfigError, DataError, OutOfMemory

if TYPE_CHECKING:
    from training.engine.callbacks.base import Emitter
    from training.engine.callbacks.hf import Counters, EventBridge
    from training.engine.data import LoadedData
    from training.engine.device import DeviceInfo
    from training.engine.spec import TrainingSpec

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
OOM_ADVICE = (
    "lower per_device_train_batch_size (raise gradient_accumulation_steps to keep the effective batch), lower "
    "max_length, set gradient_checkpointing='on', or use weights='qlora' / a smaller model"
)


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
        }


# --- errors --------------------------------------------------------------------------------------------------------


def is_oom(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU out-of-memory errors."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text
    )


def oom_error(exc: BaseException, ctx: RunContext) -> OutOfMemory:
    """An ``OutOfMemory`` with the settings that caused it and what to change."""
    h = ctx.spec.hyper
    return OutOfMemory(
        f"Out of memory on {ctx.device.type} ({ctx.device.name}) with per_device_train_batch_size="
        f"{h.per_device_train_batch_size}, max_length={h.max_length}, weights={ctx.spec.weights}: {OOM_ADVICE}. "
        f"({type(exc).__name__}: {str(exc)[:200]})"
    )


# --- tokenizer and model -------------------------------------------------------------------------------------------


def is_adapter_dir(path: str | None) -> bool:
    """True when ``path`` is a PEFT adapter folder."""
    return bool(path) and (Path(str(path)) / ADAPTER_CONFIG).is_file()


def _has_tokenizer(path: str) -> bool:
    return (Path(path) / "tokenizer_config.json").is_file() or (Path(path) / "tokenizer.json").is_file()


def load_tokenizer(ctx: RunContext) -> Any:
    """The tokenizer of ``init_from`` when it has one, else the base model's; pad token set; template resolved."""
    from transformers import AutoTokenizer

    from training.engine.data import resolve_chat_template

    source = ctx.init_path if ctx.init_path and _has_tokenizer(ctx.init_path) else ctx.model_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot load the tokenizer of {source}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    template = resolve_chat_template(tokenizer, ctx.spec.hyper.chat_template)
    tokenizer.chat_template = template
    ctx.tokenizer = tokenizer
    ctx.chat_template = template
    return tokenizer


def torch_dtype(precision: str) -> Any:
    """torch dtype for a precision name."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def _weights_dtype(ctx: RunContext) -> Any:
    """Frozen base weights (LoRA/QLoRA) are stored in the compute dtype wherever the device computes in it natively
    (GPUs, CPUs with bf16 instructions): autocast would cast them to it for every matmul anyway, so this halves the
    weights' memory and skips the casts. Trainable weights (full) stay fp32; LoRA adapters are fp32 (PEFT)."""
    import torch

    if ctx.spec.weights in ("lora", "qlora") and ctx.device.precision != "fp32":
        if ctx.device.type in ("cuda", "mps") or getattr(ctx.device, "bf16_native", False):
            return torch_dtype(ctx.device.precision)
    return torch.float32


def _disable_cpu_4bit_packing(model: Any) -> None:
    """bitsandbytes repacks 4-bit weights for fast CPU inference on its first no-grad forward in eval mode; packed
    weights silently break gradients afterwards (STACK-NOTES). Our eval-before-training is such a forward."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load_model(ctx: RunContext, *, gradient_checkpointing: int) -> Any:
    """The trainable model: full, LoRA or QLoRA on ``base_model`` (or continued from ``init_from``).

    ``gradient_checkpointing`` is 0 (off) or n: checkpoint every n-th decoder layer (1 = all)."""
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    set_seed(ctx.spec.hyper.seed)  # the adapter's random init must not depend on what ran before in this process
    if ctx.use_unsloth:
        return _load_unsloth(ctx, gradient_checkpointing)
    spec, h = ctx.spec, ctx.spec.hyper
    adapter_init = is_adapter_dir(ctx.init_path)
    weights_source = ctx.init_path if ctx.init_path and not adapter_init else ctx.model_path
    kwargs: dict[str, Any] = {"dtype": _weights_dtype(ctx), "attn_implementation": "sdpa"}
    if spec.weights == "qlora":
        from transformers import BitsAndBytesConfig

        compute = torch_dtype(ctx.device.precision)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_quant_storage=compute if ctx.device.type == "cuda" else torch.uint8,
        )
        kwargs["dtype"] = compute
        if ctx.device.type == "cuda":
            kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(weights_source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot load the model {weights_source}: {exc}") from exc
    if ctx.device.type != "cpu" and spec.weights != "qlora":
        model.to(ctx.device.type)
    model.config.use_cache = False
    if ctx.tokenizer is not None and len(ctx.tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(ctx.tokenizer))

    if spec.weights == "qlora":
        from peft import prepare_model_for_kbit_training

        _disable_cpu_4bit_packing(model)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=False,  # enabled (possibly on every n-th layer only) in _finish
        )

    if adapter_init:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ctx.init_path, is_trainable=spec.weights != "full")
        if spec.weights == "full":
            model = model.merge_and_unload()
            logger.info("job %s: merged the init_from adapter for full fine-tuning", ctx.job_id)
        return _finish(model, ctx, gradient_checkpointing)

    if spec.weights in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        targets = h.lora_target_modules
        config = LoraConfig(
            r=h.lora_r,
            lora_alpha=h.lora_alpha,
            lora_dropout=h.lora_dropout,
            target_modules=list(targets) if isinstance(targets, tuple) else targets,
            bias="none",
            task_type="CAUSAL_LM",
        )
        try:
            model = get_peft_model(model, config)
        except ValueError as exc:  # e.g. a target module that does not exist
            raise ConfigError(f"lora_target_modules={targets!r} does not fit this model: {exc}") from exc
    return _finish(model, ctx, gradient_checkpointing)


_LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _load_unsloth(ctx: RunContext, gradient_checkpointing: int) -> Any:
    """The same model through Unsloth's ``FastLanguageModel`` (patched kernels; identical spec and outputs)."""
    from unsloth import FastLanguageModel

    spec, h = ctx.spec, ctx.spec.hyper
    source = ctx.init_path or ctx.model_path
    model, _tokenizer = FastLanguageModel.from_pretrained(
        model_name=source,
        max_seq_length=h.max_length,
        dtype=None if ctx.device.type == "cuda" else _weights_dtype(ctx),
        load_in_4bit=spec.weights == "qlora",
        full_finetuning=spec.weights == "full",
        use_gradient_checkpointing="unsloth" if gradient_checkpointing else False,
    )
    if spec.weights in ("lora", "qlora"):
        targets = h.lora_target_modules
        model = FastLanguageModel.get_peft_model(
            model,
            r=h.lora_r,
            lora_alpha=h.lora_alpha,
            lora_dropout=h.lora_dropout,
            target_modules=_LLAMA_LINEAR if targets == "all-linear" else list(targets),
            bias="none",
            use_gradient_checkpointing="unsloth" if gradient_checkpointing else False,
            random_state=h.seed,
        )
    model.config.use_cache = False
    return _finish(model, ctx, 0)


def _finish(model: Any, ctx: RunContext, gradient_checkpointing: int) -> Any:
    if gradient_checkpointing:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        kwargs = {"use_reentrant": False}
        if hasattr(base, "activation_checkpointing_enable"):
            base.activation_checkpointing_enable(
                activation_checkpointing_kwargs=kwargs, every_n_layers=gradient_checkpointing
            )
        else:  # pragma: no cover - older transformers
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    ctx.emitter.log("info", f"model ready: {trainable:,} trainable of {total:,} parameters ({ctx.spec.weights})")
    return model


def model_max_positions(config: Any) -> int | None:
    """The model's context length from its config (``max_position_embeddings`` or an equivalent)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def want_gradient_checkpointing(ctx: RunContext, config: Any) -> int:
    """0 (off) or n (checkpoint every n-th decoder layer; 1 = all).

    ``on`` -> 1, ``off`` -> 0. ``auto``: all layers for QLoRA on CUDA; otherwise off when the estimated step
    memory fits in 80% of the free memory, else the sparsest of every 3rd / 2nd / every layer that fits (each
    checkpointed layer costs one extra forward of that layer: ~+11%, +16%, +33% step time).
    ``FINETUNE_GC_EVERY`` forces n (0 = off) for benchmarks.
    """
    from training.engine.device import available_memory_mb

    forced = os.environ.get("FINETUNE_GC_EVERY")
    if forced is not None and forced.strip():
        return max(0, int(forced))
    mode = ctx.spec.hyper.gradient_checkpointing
    if mode != "auto":
        return 1 if mode == "on" else 0
    if ctx.spec.weights == "qlora" and ctx.device.type == "cuda":
        return 1
    free = available_memory_mb(ctx.device.type)
    if free is None:
        return 0
    budget = 0.8 * free
    fixed, activations = estimate_training_memory_mb(ctx, config)
    choice = 1
    for every in (0, 3, 2):
        kept = activations if every == 0 else activations * (1 - 1 / every)
        if fixed + kept <= budget:
            choice = every
            break
    logger.info(
        "job %s: estimated %.0f MB weights/optimizer + %.0f MB activations, %.0f MB free: gradient checkpointing %s",
        ctx.job_id,
        fixed,
        activations,
        free,
        "off" if choice == 0 else f"every {choice} layer(s)",
    )
    return choice


def estimate_training_memory_mb(ctx: RunContext, config: Any) -> tuple[float, float]:
    """Rough peak memory of a training step without checkpointing: (weights + optimizer, activations) in MB.

    Activations: ~11k values per token and layer for a llama block with LoRA on every linear (measured 1.3 MB per
    token on SmolLM2 in fp32), plus allocator fragmentation (x1.6 measured on CPU)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(text, "hidden_size", 1024) or 1024)
    layers = int(getattr(text, "num_hidden_layers", 24) or 24)
    inter = int(getattr(text, "intermediate_size", 4 * hidden) or 4 * hidden)
    vocab = int(getattr(text, "vocab_size", 32000) or 32000)
    params = layers * (4 * hidden * hidden + 3 * hidden * inter) + 2 * vocab * hidden
    h = ctx.spec.hyper
    tokens = h.per_device_train_batch_size * h.max_length * (2 if ctx.spec.method in ("dpo", "orpo") else 1)
    act_bytes = 2 if ctx.device.precision in ("bf16", "fp16") else 4
    fragmentation = 1.6 if ctx.device.type == "cpu" else 1.1
    activations = tokens * layers * (10 * hidden + 4 * inter) * act_bytes * fragmentation
    if ctx.spec.method in ("dpo", "orpo"):
        activations += tokens * vocab * 4 * 2  # TRL computes full logits
    weight_bytes = {"qlora": 0.6, "lora": 2 if act_bytes == 2 and ctx.device.type != "cpu" else 4, "full": 4}[
        ctx.spec.weights
    ]
    optimizer = params * 12 if ctx.spec.weights == "full" else 0
    return (params * weight_bytes + optimizer) / 2**20, activations / 2**20


# --- Trainer plumbing ----------------------------------------------------------------------------------------------


def count_real_tokens(inputs: dict[str, Any]) -> tuple[int, int]:
    """(non-padding tokens, sequences) in a collated batch (padding-free, padded, DPO or ORPO layouts)."""
    if "attention_mask" in inputs and inputs["attention_mask"] is not None:
        mask = inputs["attention_mask"]
        return int(mask.sum()), int(mask.shape[0])
    pair = [k for k in ("chosen_attention_mask", "rejected_attention_mask") if k in inputs]
    if pair:
        return sum(int(inputs[k].sum()) for k in pair), int(inputs[pair[0]].shape[0])
    ids = inputs.get("input_ids")
    if ids is None:
        return 0, 0
    if "position_ids" in inputs and ids.shape[0] == 1:  # padding-free: one row of packed sequences
        return int(ids.numel()), int((inputs["position_ids"] == 0).sum())
    return int(ids.numel()), int(ids.shape[0])


class EngineTrainerMixin:
    """Mixed into every HF/TRL Trainer the engine uses: counts real tokens per step, writes checkpoints atomically
    (``checkpoints.write_checkpoint``) and keeps the last ``save_total_limit``, and times what is not training."""

    engine_counters: Counters
    engine_keep: int = 2

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        tokens, samples = count_real_tokens(inputs)
        self.engine_counters.tokens += tokens
        self.engine_counters.samples += samples
        return super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.engine_counters.excluded_s += time.perf_counter() - started

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        from training.engine.checkpoints import rotate_checkpoints, write_checkpoint

        started = time.perf_counter()
        state = self.state  # type: ignore[attr-defined]
        args = self.args  # type: ignore[attr-defined]
        self.store_flos()  # type: ignore[attr-defined]

        def write(tmp: str) -> None:
            self.save_model(tmp, _internal_call=True)  # type: ignore[attr-defined]
            if not args.save_only_model:
                self._save_optimizer_and_scheduler(tmp)  # type: ignore[attr-defined]
                self._save_scaler(tmp)  # type: ignore[attr-defined]
                self._save_rng_state(tmp)  # type: ignore[attr-defined]
            from transformers.trainer_callback import ExportableState

            handlers = [*self.callback_handler.callbacks, self.control]  # type: ignore[attr-defined]
            for cb in [c for c in handlers if isinstance(c, ExportableState)]:
                name = cb.__class__.__name__
                if isinstance(state.stateful_callbacks.get(name), list):
                    state.stateful_callbacks[name].append(cb.state())
                else:
                    state.stateful_callbacks[name] = cb.state()
            state.save_to_json(os.path.join(tmp, "trainer_state.json"))

        write_checkpoint(args.output_dir, state.global_step, write)
        rotate_checkpoints(args.output_dir, self.engine_keep)
        self.engine_counters.excluded_s += time.perf_counter() - started


def optimizer_name(ctx: RunContext) -> str:
    """AdamW everywhere (fused kernel on CUDA), so every path optimizes the same way."""
    return "adamw_torch_fused" if ctx.device.type == "cuda" else "adamw_torch"


def common_args(ctx: RunContext, *, has_eval: bool) -> dict[str, Any]:
    """TrainingArguments values shared by every method (HF names, spec values)."""
    h = ctx.spec.hyper
    precision = ctx.device.precision
    kwargs: dict[str, Any] = {
        "output_dir": ctx.spec.output_dir,
        "num_train_epochs": h.num_train_epochs,
        "max_steps": h.max_steps,
        "learning_rate": h.learning_rate,
        "per_device_train_batch_size": h.per_device_train_batch_size,
        "per_device_eval_batch_size": h.per_device_train_batch_size,
        "gradient_accumulation_steps": h.gradient_accumulation_steps,
        "warmup_steps": h.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        "weight_decay": h.weight_decay,
        "lr_scheduler_type": h.lr_scheduler_type,
        "lr_scheduler_kwargs": {"min_lr_rate": 0.1} if h.lr_scheduler_type == "cosine_with_min_lr" else {},
        "seed": h.seed,
        "data_seed": h.seed,
        "logging_strategy": "steps",
        "logging_steps": h.logging_steps,
        "eval_strategy": "steps" if (has_eval and h.eval_steps > 0) else "no",
        "eval_steps": h.eval_steps if h.eval_steps > 0 else None,
        "save_strategy": "steps" if h.save_steps > 0 else "no",
        "save_steps": h.save_steps if h.save_steps > 0 else 500,
        "save_total_limit": h.save_total_limit,
        "max_grad_norm": h.max_grad_norm,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": ctx.device.type == "cpu",
        # Checkpointing is enabled on the model itself (possibly on every n-th layer only), never by the Trainer,
        # which would turn it on for every layer.
        "gradient_checkpointing": False,
        "optim": optimizer_name(ctx),
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "prediction_loss_only": True,
        "save_only_model": False,
        "logging_first_step": False,
    }
    return kwargs


# --- method trainers -----------------------------------------------------------------------------------------------


@dataclass
class TrainOutcome:
    """What ``MethodTrainer.train`` returns."""

    final_step: int
    total_steps: int
    cancelled: bool
    early_stopped: bool


class MethodTrainer(ABC):
    """One training method (SFT, DPO, ORPO); full/LoRA/QLoRA are options of each."""

    method: ClassVar[str]
    eval_loss_key: ClassVar[str] = "eval_loss"
    perplexity_key: ClassVar[str | None] = "eval_loss"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.model: Any = None
        self.trainer: Any = None
        self.bridge: EventBridge | None = None
        self.counters: Counters | None = None
        self.train_rows: list[Any] = []
        self.eval_rows: list[Any] = []
        self.eval_examples: list[dict[str, Any]] = []  # canonical held-out rows (for compare_prompts)
        self.gradient_checkpointing = 0  # 0 = off, n = every n-th layer
        self.report: DataReport | None = None

    # data ----------------------------------------------------------------------------------------------------------
    @abstractmethod
    def prepare_data(self, train: LoadedData, evaluation: LoadedData | None) -> DataReport:
        """Split/tokenize; raise ``DataError`` for data this method cannot train on."""

    def split(self, examples: list[dict[str, Any]], evaluation: LoadedData | None) -> tuple[list[Any], list[Any]]:
        """(train, eval) canonical rows: ``eval_files`` when given, else a seeded ``validation_split`` hold-out
        (at most ``max_eval_samples`` rows)."""
        h = self.ctx.spec.hyper
        if evaluation is not None:
            return list(examples), list(evaluation.examples[: h.max_eval_samples])
        n = len(examples)
        if h.validation_split <= 0 or n < 4:
            return list(examples), []
        n_eval = min(h.max_eval_samples, max(1, round(n * h.validation_split)))
        order = list(range(n))
        random.Random(h.seed).shuffle(order)
        held = set(order[:n_eval])
        train = [ex for i, ex in enumerate(examples) if i not in held]
        evaluation_rows = [examples[i] for i in sorted(held)]
        return train, evaluation_rows

    # model and trainer ---------------------------------------------------------------------------------------------
    def load(self, config: Any) -> None:
        """Load the model (gradient checkpointing decided from the memory estimate)."""
        self.gradient_checkpointing = want_gradient_checkpointing(self.ctx, config)
        self.model = load_model(self.ctx, gradient_checkpointing=self.gradient_checkpointing)

    @abstractmethod
    def build(self, callbacks: Sequence[Any]) -> None:
        """Create the HF/TRL Trainer (``self.trainer``) with the engine's callbacks."""

    def make_bridge(self) -> tuple[Any, Any]:
        """The counters and the event bridge shared by every method."""
        from training.engine.callbacks.hf import Counters, EventBridge

        h = self.ctx.spec.hyper
        self.counters = Counters()
        self.bridge = EventBridge(
            self.ctx.emitter,
            self.counters,
            device_type=self.ctx.device.type,
            early_stopping_patience=h.early_stopping_patience,
            early_stopping_threshold=h.early_stopping_threshold,
            eval_loss_key=self.eval_loss_key,
            perplexity_key=self.perplexity_key,
            best_dir=self.best_dir if h.keeps_best_model and self.eval_rows else None,
        )
        self.bridge.eval_samples = len(self.eval_rows)
        return self.counters, self.bridge

    @property
    def best_dir(self) -> str:
        """Where the best weights are kept (load_best_model_at_end)."""
        from training.engine.best import BEST_DIR

        return os.path.join(self.ctx.spec.output_dir, BEST_DIR)

    def keep_best_result(self, final_step: int) -> dict[str, Any]:
        """After training with load_best_model_at_end: make sure the last weights were evaluated, then put the best
        weights back into the model if they were better. Returns the best_* metrics (empty when not kept)."""
        bridge = self.bridge
        if bridge is None or bridge.best_dir is None or bridge.best_step is None:
            return {}
        if bridge.last_eval_step != final_step:  # the last weights compete too
            self.evaluate("during")
        restored = bridge.best_step != final_step
        if restored:
            from training.engine.best import restore_best

            restore_best(self.trainer.model, bridge.best_dir)
            self.ctx.emitter.log(
                "info",
                f"restored the best weights: step {bridge.best_step} (eval_loss {bridge.best_loss:.4f}); the last "
                f"step {final_step} had eval_loss {bridge.last_eval_loss:.4f}",
            )
        return {"best_step": bridge.best_step, "best_eval_loss": bridge.best_loss, "best_model_restored": restored}

    def attach(self, trainer: Any) -> None:
        """Wire the counters and the keep-last-K limit into a constructed trainer."""
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.engine_counters = self.counters
        trainer.engine_keep = self.ctx.spec.hyper.save_total_limit
        for noisy in (PrinterCallback, ProgressCallback):  # stdout belongs to the caller (the CLI prints JSON lines)
            trainer.remove_callback(noisy)
        self.trainer = trainer

    # phases --------------------------------------------------------------------------------------------------------
    def evaluate(self, phase: str) -> dict[str, float] | None:
        """Evaluate on the held-out rows (None when there are none); emits an eval event with ``phase``."""
        if not self.eval_rows or self.trainer is None:
            return None
        assert self.bridge is not None
        self.bridge.phase = phase
        try:
            return dict(self.trainer.evaluate())
        finally:
            self.bridge.phase = "during"

    def train(self, resume_from: str | None) -> TrainOutcome:
        """Run the training loop (resuming from a checkpoint folder when given)."""
        assert self.trainer is not None and self.bridge is not None
        with _adapter_inputs_uncast(self.trainer):
            self.trainer.train(resume_from_checkpoint=resume_from)
        state = self.trainer.state
        return TrainOutcome(
            final_step=int(state.global_step),
            total_steps=int(state.max_steps),
            cancelled=self.bridge.cancelled,
            early_stopped=self.bridge.early_stopped,
        )

    def save_final(self, dest: str) -> None:
        """Write the trained model (adapter for LoRA/QLoRA, full weights otherwise) + tokenizer + chat template."""
        model = self.trainer.model if self.trainer is not None else self.model
        model = getattr(self.trainer, "accelerator", None).unwrap_model(model) if self.trainer is not None else model
        model.save_pretrained(dest, safe_serialization=True)
        tokenizer = self.ctx.tokenizer
        tokenizer.chat_template = self.ctx.chat_template
        tokenizer.save_pretrained(dest)


def _adapter_inputs_uncast(trainer: Any) -> Any:
    """Under autocast, stop PEFT from casting every LoRA layer's input to the adapter's fp32 dtype.

    PEFT upcasts ``x`` (bf16 under autocast) to fp32 before ``lora_A``, and autocast casts it straight back to bf16
    for the matmul: two activation-sized copies per adapted layer in forward, two more in backward, and both copies
    are kept for backward. Profiled on SmolLM2 LoRA SFT (CPU, bf16 autocast) those copies were 20% of the step time.
    With the cast off, autocast casts only the small adapter weights. Outside training (generation, export) PEFT's
    default is restored, since there is no autocast there to reconcile the dtypes."""
    import contextlib

    args = trainer.args
    if not (getattr(args, "bf16", False) or getattr(args, "fp16", False)):
        return contextlib.nullcontext()
    try:
        from peft.helpers import disable_input_dtype_casting
    except ImportError:  # pragma: no cover - older PEFT
        return contextlib.nullcontext()
    return disable_input_dtype_casting(trainer.model, active=True)


TRAINERS: dict[str, Callable[[RunContext], MethodTrainer]] = {}


def register(method: str) -> Callable[[type[MethodTrainer]], type[MethodTrainer]]:
    """Class decorator adding a method trainer to the registry."""

    def deco(cls: type[MethodTrainer]) -> type[MethodTrainer]:
        cls.method = method
        TRAINERS[method] = cls
        return cls

    return deco


def get_trainer(method: str, ctx: RunContext) -> MethodTrainer:
    """Instantiate the trainer registered for ``method``."""
    from . import dpo, orpo, sft  # noqa: F401  (registration)

    try:
        factory = TRAINERS[method]
    except KeyError:
        raise ConfigError(f"Unknown method {method!r}; known: {', '.join(sorted(TRAINERS))}.") from None
    return factory(ctx)


def preference_truncation(ctx: RunContext, rows: Sequence[dict[str, Any]]) -> int:
    """How many preference rows exceed ``max_length`` (prompt + the longer response)."""
    from training.engine.data import token_lengths

    if not rows:
        return 0
    chosen = token_lengths(ctx.tokenizer, rows, chat_template=ctx.chat_template)
    rejected = token_lengths(
        ctx.tokenizer,
        [{"prompt": r["prompt"], "chosen": r["rejected"]} for r in rows],
        chat_template=ctx.chat_template,
    )
    limit = ctx.spec.hyper.max_length
    return sum(1 for c, r in zip(chosen, rejected, strict=True) if max(c, r) > limit)


def require_preference(ctx: RunContext, loaded: LoadedData) -> None:
    """DPO/ORPO need chosen/rejected pairs: a clear ``DataError`` otherwise."""
    if not loaded.is_preference:
        raise DataError(
            f"{ctx.spec.method.upper()} needs preference data (prompt/chosen/rejected pairs), but "
            f"{', '.join(loaded.files) or 'the dataset'} is {loaded.format.value} data; use method 'sft' for it, or "
            "upload a preference dataset (formats: preference, hh_rlhf, sharegpt_preference)."
        )


def steps_per_epoch(rows: int, ctx: RunContext) -> int:
    """Optimizer steps in one epoch."""
    h = ctx.spec.hyper
    return max(1, math.ceil(math.ceil(rows / h.per_device_train_batch_size) / h.gradient_accumulation_steps))
