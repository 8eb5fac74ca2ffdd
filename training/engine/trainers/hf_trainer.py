"""Plumbing shared by every Hugging Face / TRL Trainer the engine builds: the engine mixin (real-token counting,
atomic checkpoints, time spent outside training), the shared ``TrainingArguments`` values, and PEFT's input casting
under autocast."""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

from .context import RunContext
from .sharding import Strategy, is_sharded, resolve_sharding, sharding_args

if TYPE_CHECKING:
    from training.engine.callbacks.hf import Counters


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
        self.store_flos()  # type: ignore[attr-defined]  (a collective in a distributed run: every rank calls it)
        if is_sharded(self):
            self._save_sharded_checkpoint()
            self.engine_counters.excluded_s += time.perf_counter() - started
            return
        if not self.args.should_save:  # type: ignore[attr-defined]
            return  # distributed: rank 0 writes the checkpoint (the weights are the same on every rank)

        def write(tmp: str) -> None:
            self.save_model(tmp, _internal_call=True)  # type: ignore[attr-defined]
            if not args.save_only_model:
                self._save_optimizer_and_scheduler(tmp)  # type: ignore[attr-defined]
                self._save_scaler(tmp)  # type: ignore[attr-defined]
                self._save_rng_state(tmp)  # type: ignore[attr-defined]
            self._save_trainer_state(tmp)

        write_checkpoint(args.output_dir, state.global_step, write)
        rotate_checkpoints(args.output_dir, self.engine_keep)
        self.engine_counters.excluded_s += time.perf_counter() - started

    def _save_sharded_checkpoint(self) -> None:
        """FSDP / ZeRO-3: the model and optimizer state are split across the ranks, so every rank joins the gathers
        into the same staging folder (rank 0 makes it and writes the gathered files; each rank writes its own RNG
        state), then rank 0 publishes it atomically like any other checkpoint."""
        from training.engine.checkpoints import begin_checkpoint, publish_checkpoint, rotate_checkpoints

        state, args = self.state, self.args  # type: ignore[attr-defined]
        accelerator = self.accelerator  # type: ignore[attr-defined]
        tmp = begin_checkpoint(args.output_dir, state.global_step, create=args.should_save)
        accelerator.wait_for_everyone()
        self.save_model(str(tmp), _internal_call=True)  # type: ignore[attr-defined]
        if not args.save_only_model:
            self._save_optimizer_and_scheduler(str(tmp))  # type: ignore[attr-defined]
            self._save_scaler(str(tmp))  # type: ignore[attr-defined]
            self._save_rng_state(str(tmp))  # type: ignore[attr-defined]
        accelerator.wait_for_everyone()
        if args.should_save:
            self._save_trainer_state(str(tmp))
            publish_checkpoint(args.output_dir, state.global_step, tmp)
            rotate_checkpoints(args.output_dir, self.engine_keep)
        accelerator.wait_for_everyone()

    def _save_trainer_state(self, tmp: str) -> None:
        """``trainer_state.json`` with the exportable callbacks' state, as the Trainer writes it."""
        state = self.state  # type: ignore[attr-defined]
        from transformers.trainer_callback import ExportableState

        handlers = [*self.callback_handler.callbacks, self.control]  # type: ignore[attr-defined]
        for cb in [c for c in handlers if isinstance(c, ExportableState)]:
            name = cb.__class__.__name__
            if isinstance(state.stateful_callbacks.get(name), list):
                state.stateful_callbacks[name].append(cb.state())
            else:
                state.stateful_callbacks[name] = cb.state()
        state.save_to_json(os.path.join(tmp, "trainer_state.json"))


def optimizer_name(ctx: RunContext) -> str:
    """AdamW everywhere, as torch's fused kernel (CUDA and CPU; MPS keeps the loop). On CPU the per-parameter loop
    ran about a dozen small ops for each of a LoRA run's 420 adapter tensors: measured on SmolLM2 LoRA SFT (2 cores,
    bf16) the optimizer step fell from ~0.2 s to ~0.02 s per step with the fused kernel."""
    return "adamw_torch" if ctx.device.type == "mps" else "adamw_torch_fused"


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
    if ctx.spec.hyper.num_processes > 1 and ctx.device.type == "cpu":
        kwargs["ddp_backend"] = "gloo"  # CPU ranks (tests, CPU hosts); CUDA ranks get accelerate's default, NCCL
    if ctx.spec.hyper.num_processes > 1:
        kwargs["ddp_find_unused_parameters"] = False  # every trainable parameter (adapters, or all) is used
    kwargs.update(sharding_args(run_sharding(ctx)))
    return kwargs


def run_sharding(ctx: RunContext) -> Strategy:
    """How this run's processes hold the model (``hyper.sharding`` resolved for the weights and device)."""
    h = ctx.spec.hyper
    return resolve_sharding(
        sharding=h.sharding, processes=h.num_processes, weights=ctx.spec.weights, device_type=ctx.device.type
    )


def adapter_inputs_uncast(trainer: Any) -> Any:
    """Under autocast, stop PEFT from casting every LoRA layer's input to the adapter's fp32 dtype.

    PEFT upcasts ``x`` (bf16 under autocast) to fp32 before ``lora_A``, and autocast casts it straight back to bf16
    for the matmul: two activation-sized copies per adapted layer in forward, two more in backward, and both copies
    are kept for backward. Profiled on SmolLM2 LoRA SFT (CPU, bf16 autocast) those copies were 20% of the step time.
    With the cast off, autocast casts only the small adapter weights. Outside training (generation, export) PEFT's
    default is restored, since there is no autocast there to reconcile the dtypes."""
    args = trainer.args
    if not (getattr(args, "bf16", False) or getattr(args, "fp16", False)):
        return contextlib.nullcontext()
    try:
        from peft.helpers import disable_input_dtype_casting
    except ImportError:  # pragma: no cover - older PEFT
        return contextlib.nullcontext()
    return disable_input_dtype_casting(trainer.model, active=True)
