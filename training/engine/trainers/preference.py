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
from .hf_trainer import common_args

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
        """Construct the TRL trainer on the pair datasets; report rows it dropped (a prompt that fills max_length)."""
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
