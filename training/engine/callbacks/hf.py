"""The ``transformers.TrainerCallback`` that turns Trainer hooks into engine events.

It also implements cooperative cancellation (after every optimizer step it polls ``should_stop()``; when true it asks
the Trainer to save a checkpoint and stop, so the run ends within one step) and eval-loss early stopping.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from training.engine.device import memory_snapshot

from .base import CheckpointEvent, Emitter, EvalEvent, MetricEvent

logger = logging.getLogger(__name__)

_SKIP_LOG_KEYS = {"loss", "learning_rate", "grad_norm", "epoch", "step", "total_flos"}


def perplexity(loss: float | None) -> float | None:
    """exp(loss), None when the loss is missing or not finite."""
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(min(loss, 700.0))


class Counters:
    """Work done by the Trainer, updated by ``EngineTrainerMixin.training_step`` (real tokens, sequences) and the
    time spent outside training steps (checkpoints, evaluation) so throughput excludes it."""

    def __init__(self) -> None:
        self.tokens = 0
        self.samples = 0
        self.excluded_s = 0.0


class EventBridge(TrainerCallback):
    """Trainer hooks -> metric/eval/checkpoint events; cancellation; early stopping."""

    def __init__(
        self,
        emitter: Emitter,
        counters: Counters,
        *,
        device_type: str,
        early_stopping_patience: int | None = None,
        early_stopping_threshold: float = 0.0,
        eval_loss_key: str = "eval_loss",
        perplexity_key: str | None = "eval_loss",
        best_dir: str | None = None,
    ) -> None:
        self.emitter = emitter
        self.counters = counters
        self.device_type = device_type
        self.patience = early_stopping_patience
        self.threshold = early_stopping_threshold
        self.eval_loss_key = eval_loss_key
        self.perplexity_key = perplexity_key
        self.phase = "during"
        self.eval_samples = 0
        self.cancelled = False
        self.early_stopped = False
        self.metrics: list[MetricEvent] = []
        self.evals: list[EvalEvent] = []
        self.peak_memory_mb = 0.0
        self._best: float | None = None
        self._bad_evals = 0
        # Best-model tracking (load_best_model_at_end): the lowest eval loss during training and its step; the
        # weights are kept in best_dir (training.engine.best).
        self.best_dir = best_dir
        self.best_step: int | None = None
        self.best_loss: float | None = None
        self.last_eval_step: int | None = None
        self.last_eval_loss: float | None = None
        self._t0 = time.perf_counter()
        self._start_step = 0
        self._last_log_t = self._t0
        self._last_tokens = 0
        self._last_samples = 0
        self._last_excluded = 0.0
        self._total_train_tokens = 0
        self._total_train_s = 0.0

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        """Start the clocks (a resumed run starts counting at its checkpoint's step)."""
        self.phase = "during"
        if self.device_type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._t0 = self._last_log_t = time.perf_counter()
        self._start_step = state.global_step
        self._last_tokens = self.counters.tokens
        self._last_samples = self.counters.samples
        self._last_excluded = self.counters.excluded_s
        if self.best_dir is not None:
            self._load_best(state.global_step)

    def _load_best(self, global_step: int) -> None:
        """A resumed run keeps the best snapshot taken up to its checkpoint; a fresh one (or a snapshot newer than
        the checkpoint, whose steps will be trained again) starts without one."""
        from training.engine.best import discard_best, read_best

        assert self.best_dir is not None
        info = read_best(self.best_dir)
        if info is None or global_step == 0 or info["step"] > global_step:
            discard_best(self.best_dir)
            self.best_step = self.best_loss = None
            return
        self.best_step, self.best_loss = info["step"], info["eval_loss"]
        if self.patience is not None:
            self._best, self._bad_evals = info["eval_loss"], 0

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        """Poll for cancellation after every optimizer step; on a stop, save a checkpoint and end the loop. In a
        distributed run the ranks vote (a collective every step), so that all of them stop at the same step."""
        from training.engine.launch import any_rank

        if not self.cancelled and any_rank(self.emitter.should_stop()):
            self.cancelled = True
            control.should_training_stop = True
            control.should_save = True
            control.should_evaluate = False
            self.emitter.log("warning", f"cancellation requested: stopping at step {state.global_step}")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        """Emit a metric event for every training log (the final summary log and eval logs are not metrics)."""
        logs = logs or {}
        if "loss" not in logs or any(k.startswith("eval_") for k in logs):
            return
        from training.engine.launch import sum_ranks

        now = time.perf_counter()
        # Every rank logs at the same steps: the work of all of them (tokens, sequences) is summed here.
        tokens, samples = sum_ranks(
            [self.counters.tokens - self._last_tokens, self.counters.samples - self._last_samples]
        )
        excluded = self.counters.excluded_s - self._last_excluded
        busy = max(now - self._last_log_t - excluded, 1e-9)
        self._total_train_tokens += tokens
        self._total_train_s += busy
        self._last_log_t, self._last_tokens, self._last_samples = now, self.counters.tokens, self.counters.samples
        self._last_excluded = self.counters.excluded_s
        elapsed = now - self._t0
        done = state.global_step - self._start_step
        remaining = max(state.max_steps - state.global_step, 0)
        eta = elapsed / done * remaining if done > 0 else None
        headline, detail = memory_snapshot(self.device_type)
        self.peak_memory_mb = max(
            self.peak_memory_mb, headline, detail.get("rss_mb", 0.0) if self.device_type == "cpu" else 0.0
        )
        extra = {
            k: float(v)
            for k, v in logs.items()
            if k not in _SKIP_LOG_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        event = MetricEvent(
            step=state.global_step,
            total_steps=state.max_steps,
            epoch=round(float(state.epoch or 0.0), 4),
            loss=_float(logs.get("loss")),
            learning_rate=_float(logs.get("learning_rate")),
            grad_norm=_float(logs.get("grad_norm")),
            tokens_per_s=round(tokens / busy, 2),
            samples_per_s=round(samples / busy, 3),
            tokens=tokens,
            memory_mb=headline,
            memory=detail,
            elapsed_s=round(elapsed, 3),
            eta_s=round(eta, 1) if eta is not None else None,
            extra=extra,
        )
        self.metrics.append(event)
        self.emitter.emit(event)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        """Emit an eval event; during training also apply early stopping."""
        metrics = metrics or {}
        loss = _float(metrics.get(self.eval_loss_key))
        ppl = perplexity(_float(metrics.get(self.perplexity_key))) if self.perplexity_key else None
        extra = {
            k: float(v)
            for k, v in metrics.items()
            if k not in (self.eval_loss_key,) and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        event = EvalEvent(
            step=state.global_step,
            eval_loss=loss,
            perplexity=ppl,
            phase=self.phase,
            samples=self.eval_samples,
            extra=extra,
        )
        self.evals.append(event)
        self.emitter.emit(event)
        if self.phase == "during" and loss is not None:
            self.last_eval_step, self.last_eval_loss = state.global_step, loss
            if self.best_dir is not None and (self.best_loss is None or loss < self.best_loss):
                from training.engine.best import save_best

                save_best(kw["model"], self.best_dir, step=state.global_step, eval_loss=loss)
                self.best_step, self.best_loss = state.global_step, loss
        if self.phase != "during" or self.patience is None or loss is None:
            return
        if self._best is None or loss < self._best - self.threshold:
            self._best, self._bad_evals = loss, 0
            return
        self._bad_evals += 1
        if self._bad_evals >= self.patience:
            self.early_stopped = True
            control.should_training_stop = True
            self.emitter.log(
                "info",
                f"early stopping at step {state.global_step}: eval_loss did not improve on {self._best:.4f} "
                f"for {self._bad_evals} evaluations",
            )

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        """Emit a checkpoint event for the checkpoint just published."""
        from training.engine.checkpoints import latest_complete_checkpoint

        path = latest_complete_checkpoint(args.output_dir)
        if path is not None:
            self.emitter.emit(CheckpointEvent(step=state.global_step, path=path))

    # --- summary -----------------------------------------------------------------------------------------------
    @property
    def tokens_logged(self) -> int:
        """Real tokens trained (every rank's) up to the last metric event of this session."""
        return self._total_train_tokens

    @property
    def mean_tokens_per_s(self) -> float | None:
        """Real tokens per second over all training time of this session (checkpoints and evals excluded)."""
        if self._total_train_s <= 0:
            return None
        return round(self._total_train_tokens / self._total_train_s, 2)

    @property
    def train_seconds(self) -> float:
        """Training time of this session (checkpoints and evals excluded)."""
        return self._total_train_s


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
