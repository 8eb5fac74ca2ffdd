"""``MethodTrainer``: what every training method (SFT, DPO, ORPO) shares around its Hugging Face / TRL Trainer:
the eval hold-out, model loading with the memory model's gradient checkpointing, the event bridge, best-model
restoring, training and saving. Full/LoRA/QLoRA are options of each method."""

from __future__ import annotations

import os
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .context import DataReport, RunContext, TrainOutcome
from .hf_trainer import adapter_inputs_uncast
from .loading import load_model
from .memory_guard import step_memory, want_gradient_checkpointing

if TYPE_CHECKING:
    from training.engine.callbacks.hf import Counters, EventBridge
    from training.engine.data import LoadedData
    from training.engine.memory import MemoryEstimate


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
        self.memory_estimate: MemoryEstimate | None = None  # the memory model's step estimate (set by ``load``)
        self.full_state: dict[str, Any] | None = None  # sharded runs: the gathered weights rank 0 saves

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
        self.memory_estimate = step_memory(self.ctx, config)
        self.gradient_checkpointing = want_gradient_checkpointing(self.ctx, self.memory_estimate)
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

    def replay_evaluation(self, phase: str, metrics: dict[str, float]) -> None:
        """Report an evaluation computed earlier (the cached base model evaluation) as if it had just run."""
        if self.trainer is None or self.bridge is None:
            return
        self.bridge.phase = phase
        try:
            t = self.trainer
            # As Trainer.evaluate reports: log, then on_evaluate, so the bridge and every tracker see it.
            t.log(dict(metrics))
            t.control = t.callback_handler.on_evaluate(t.args, t.state, t.control, dict(metrics))
        finally:
            self.bridge.phase = "during"

    def train(self, resume_from: str | None) -> TrainOutcome:
        """Run the training loop (resuming from a checkpoint folder when given)."""
        assert self.trainer is not None and self.bridge is not None
        with adapter_inputs_uncast(self.trainer):
            self.trainer.train(resume_from_checkpoint=resume_from)
        state = self.trainer.state
        return TrainOutcome(
            final_step=int(state.global_step),
            total_steps=int(state.max_steps),
            cancelled=self.bridge.cancelled,
            early_stopped=self.bridge.early_stopped,
        )

    def gather_full_state(self) -> None:
        """Sharded runs (FSDP / ZeRO-3): every rank joins gathering the full weights, which rank 0 keeps for
        ``save_final``. Nothing to do otherwise (every rank holds the whole model)."""
        from .sharding import is_sharded

        if self.trainer is not None and is_sharded(self.trainer):
            self.full_state = self.trainer.accelerator.get_state_dict(self.trainer.model)

    def save_final(self, dest: str) -> None:
        """Write the trained model (adapter for LoRA/QLoRA, full weights otherwise) + tokenizer + chat template."""
        model = self.trainer.model if self.trainer is not None else self.model
        model = getattr(self.trainer, "accelerator", None).unwrap_model(model) if self.trainer is not None else model
        _record_stock_attention(model)
        extra = {"state_dict": self.full_state} if self.full_state is not None else {}
        model.save_pretrained(dest, safe_serialization=True, **extra)
        tokenizer = self.ctx.tokenizer
        tokenizer.chat_template = self.ctx.chat_template
        tokenizer.save_pretrained(dest)


def _record_stock_attention(model: Any) -> None:
    """Saved models name the stock SDPA attention: the packed attention of the CPU paths (``packed_attention.py``)
    is a training-time detail that loaders elsewhere do not know."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "_attn_implementation", None) not in (None, "sdpa", "eager"):
        try:
            base.set_attn_implementation("sdpa")
        except (ValueError, AttributeError):
            pass
