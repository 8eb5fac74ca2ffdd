"""Model and tokenizer loading for every method: full, LoRA, QLoRA, ``init_from`` (an adapter or a full model) and
the Unsloth fast path."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from training.engine.errors import ConfigError
from training.engine.exporters.base import ADAPTER_CONFIG
from training.engine.exporters.base import is_adapter_dir as _is_adapter_folder

from .context import RunContext

logger = logging.getLogger(__name__)

__all__ = [
    "ADAPTER_CONFIG",
    "is_adapter_dir",
    "load_model",
    "load_tokenizer",
    "model_max_positions",
    "torch_dtype",
]

_LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def is_adapter_dir(path: str | None) -> bool:
    """True when ``path`` is a PEFT adapter folder."""
    return bool(path) and _is_adapter_folder(str(path))


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
    weights silently break gradients afterwards. Our eval-before-training is such a forward."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _from_pretrained_kwargs(ctx: RunContext) -> dict[str, Any]:
    """dtype, attention and (QLoRA) 4-bit quantization arguments of ``from_pretrained``."""
    import torch

    kwargs: dict[str, Any] = {"dtype": _weights_dtype(ctx), "attn_implementation": "sdpa"}
    if ctx.spec.weights == "qlora":
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
    return kwargs


def _load_base(ctx: RunContext, source: str) -> Any:
    """The pretrained weights on the run's device, cache off, embeddings sized for the tokenizer, ready for k-bit
    training under QLoRA."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(source, **_from_pretrained_kwargs(ctx))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot load the model {source}: {exc}") from exc
    if ctx.device.type != "cpu" and ctx.spec.weights != "qlora":
        model.to(ctx.device.type)
    model.config.use_cache = False
    if ctx.tokenizer is not None and len(ctx.tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(ctx.tokenizer))
    if ctx.spec.weights == "qlora":
        from peft import prepare_model_for_kbit_training

        _disable_cpu_4bit_packing(model)
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=False,  # enabled (possibly on every n-th layer only) in _finish
        )
    return model


def _continue_adapter(model: Any, ctx: RunContext) -> Any:
    """``init_from`` is an adapter: train it further (LoRA/QLoRA) or merge it into the weights (full)."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, ctx.init_path, is_trainable=ctx.spec.weights != "full")
    if ctx.spec.weights == "full":
        model = model.merge_and_unload()
        logger.info("job %s: merged the init_from adapter for full fine-tuning", ctx.job_id)
    return model


def _new_adapter(model: Any, ctx: RunContext) -> Any:
    """A fresh LoRA adapter on ``lora_target_modules``."""
    from peft import LoraConfig, get_peft_model

    h = ctx.spec.hyper
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
        return get_peft_model(model, config)
    except ValueError as exc:  # e.g. a target module that does not exist
        raise ConfigError(f"lora_target_modules={targets!r} does not fit this model: {exc}") from exc


def load_model(ctx: RunContext, *, gradient_checkpointing: int) -> Any:
    """The trainable model: full, LoRA or QLoRA on ``base_model`` (or continued from ``init_from``).

    ``gradient_checkpointing`` is 0 (off) or n: checkpoint every n-th decoder layer (1 = all)."""
    from transformers import set_seed

    set_seed(ctx.spec.hyper.seed)  # the adapter's random init must not depend on what ran before in this process
    if ctx.use_unsloth:
        return _load_unsloth(ctx, gradient_checkpointing)
    adapter_init = is_adapter_dir(ctx.init_path)
    model = _load_base(ctx, ctx.init_path if ctx.init_path and not adapter_init else ctx.model_path)
    if adapter_init:
        model = _continue_adapter(model, ctx)
    elif ctx.spec.weights in ("lora", "qlora"):
        model = _new_adapter(model, ctx)
    return _finish(model, ctx, gradient_checkpointing)


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
