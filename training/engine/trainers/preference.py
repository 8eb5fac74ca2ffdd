"""What the preference methods (DPO, ORPO, ...) share: prompt/chosen/rejected data checks, truncation counting, the
conversational pair datasets TRL takes, and ``PreferenceTrainer``, whose subclasses only name their TRL config and
trainer."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from training.engine.errors import DataError

from .base import MethodTrainer
from .context import DataReport, RunContext
from .dpo_packed import DpoPath, precompute_pays
from .hf_trainer import common_args
from .sft import _supports, _use_packed_attention, supports_fused_loss

if TYPE_CHECKING:
    from training.engine.data import LoadedData


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
    if loaded.is_unpaired_preference:
        raise DataError(
            f"{ctx.spec.method.upper()} needs chosen/rejected pairs, but the dataset is KTO data (single answers "
            "labelled desirable or undesirable); train it with method 'kto'."
        )
    if not loaded.is_preference:
        raise DataError(
            f"{ctx.spec.method.upper()} needs preference data (prompt/chosen/rejected pairs), but "
            f"{', '.join(loaded.files) or 'the dataset'} is {loaded.format.value} data; use method 'sft' for it, or "
            "upload a preference dataset (formats: preference, hh_rlhf, sharegpt_preference)."
        )


def preference_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` of conversational prompt/chosen/rejected rows."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])


class PreferenceTrainer(MethodTrainer):
    """A TRL preference trainer on prompt/chosen/rejected pairs (TRL renders them with the chat template and
    tokenizes them). Subclasses give ``config()`` and ``trainer_class()``."""

    perplexity_key: ClassVar[str | None] = None  # a preference loss is not a language-model loss
    has_reference: ClassVar[bool] = True  # DPO and KTO score against a reference model; ORPO has none
    row_unit: ClassVar[str] = "pairs"  # what a training row is, for the log
    _path: DpoPath | None = None

    def select_path(self, inputs: dict[str, Any]) -> DpoPath:
        """The packed CPU path or stock TRL for this method, from ``packed_inputs`` (stock unless overridden)."""
        return DpoPath(False, "no packed path for this method")

    def packed_inputs(self) -> dict[str, Any]:
        """What every packed path's selection takes (``dpo_packed.packed_refusal``): the device, the weights, Unsloth,
        the process count and whether the loaded model has a plain linear head and packed-sequence support."""
        ctx = self.ctx
        return {
            "device_type": ctx.device.type,
            "weights": ctx.spec.weights,
            "use_unsloth": ctx.use_unsloth,
            "num_processes": ctx.spec.hyper.num_processes,
            "supports_packed": supports_fused_loss(self.model) and _supports(self.model, "position_ids"),
        }

    def path(self) -> DpoPath:
        """The packed CPU path or stock TRL, decided once the model is loaded."""
        if self._path is None:
            self._path = self.select_path(self.packed_inputs())
        return self._path

    def precompute_reference(self) -> bool:
        """Whether the packed path computes the reference log-probs once up front (see ``precompute_pays``)."""
        h = self.ctx.spec.hyper
        return precompute_pays(
            max_steps=h.max_steps,
            rows_per_step=h.per_device_train_batch_size * h.gradient_accumulation_steps,
            train_rows=len(self.train_rows),
        )

    def reference_args(self) -> dict[str, Any]:
        """The TRL config values for the reference pass: precomputed on the packed path when that pays (no-grad
        packed rows are cheap in memory, so a larger batch amortizes the per-call overhead)."""
        if not (self.has_reference and self.path().packed and self.precompute_reference()):
            return {}
        batch = 2 * self.ctx.spec.hyper.per_device_train_batch_size
        return {"precompute_ref_log_probs": True, "precompute_ref_batch_size": batch}

    def prepare_data(self, train: LoadedData, evaluation: LoadedData | None) -> DataReport:
        """Check for preference pairs, hold out eval rows, count rows longer than max_length."""
        require_preference(self.ctx, train)
        if evaluation is not None:
            require_preference(self.ctx, evaluation)
        train_rows, eval_rows = self.split(train.examples, evaluation)
        self.train_rows, self.eval_rows, self.eval_examples = train_rows, eval_rows, eval_rows
        self.report = DataReport(
            format=train.format.value,
            rows=train.rows_read,
            train_rows=len(train_rows),
            eval_rows=len(eval_rows),
            row_errors=train.rows_skipped,
            truncated=preference_truncation(self.ctx, train_rows),
            dropped=0,
            sha256=train.sha256,
            files=tuple(train.files),
            first_row_errors=[str(e) for e in train.row_errors[:5]],
        )
        return self.report

    def args(self) -> dict[str, Any]:
        """The ``TrainingArguments`` values of the method's TRL config (``common_args`` unless overridden)."""
        return common_args(self.ctx, has_eval=bool(self.eval_rows))

    def dataset(self, rows: Sequence[dict[str, Any]]) -> Any:
        """The ``datasets.Dataset`` the TRL trainer takes (prompt/chosen/rejected pairs unless overridden)."""
        return preference_dataset(rows)

    @abstractmethod
    def config(self) -> Any:
        """The TRL config (``DPOConfig``, ``ORPOConfig``, ...) for this spec."""

    @abstractmethod
    def trainer_class(self) -> type:
        """The TRL trainer class with ``EngineTrainerMixin`` mixed in."""

    def build(self, callbacks: Sequence[Any]) -> None:
        """Switch to the packed attention on the packed path and log the path; construct the TRL trainer on the
        datasets (which precomputes the reference log-probs where ``reference_args`` asks) and log how that went;
        report rows it dropped (a prompt that fills max_length)."""
        path, name = self.path(), self.ctx.spec.method.upper()
        if path.packed:
            _use_packed_attention(self.model)
        self.ctx.emitter.log("info", f"{name} path: {path.describe()}")
        self.build_trainer(callbacks)
        if not (self.has_reference and path.packed and self.trainer is not None):
            return
        if self.precompute_reference():
            trainer = self.trainer
            message = f"precomputed: {trainer.precompute_count} {self.row_unit} in {trainer.precompute_s:.1f} s"
        else:
            h = self.ctx.spec.hyper
            rows = h.max_steps * h.per_device_train_batch_size * h.gradient_accumulation_steps
            message = f"computed with each step (the run trains on {rows} of {len(self.train_rows)} {self.row_unit})"
        self.ctx.emitter.log("info", f"{name} reference log-probs {message}")

    def build_trainer(self, callbacks: Sequence[Any]) -> None:
        """Construct the TRL trainer on the datasets; report rows it dropped (a prompt that fills max_length)."""
        _counters, bridge = self.make_bridge()
        cls = self.trainer_class()
        trainer = cls(
            model=self.model,
            args=self.config(),
            train_dataset=self.dataset(self.train_rows),
            eval_dataset=self.dataset(self.eval_rows) if self.eval_rows else None,
            processing_class=self.ctx.tokenizer,
            callbacks=[bridge, *callbacks],
        )
        self.attach(trainer)
        dropped = len(self.train_rows) - len(trainer.train_dataset)
        if dropped and self.report is not None:
            self.report.dropped = dropped
        if dropped:
            self.ctx.emitter.log("warning", f"{dropped} rows dropped: their prompt alone fills max_length")
