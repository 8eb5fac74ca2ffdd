"""Direct Preference Optimization with ``trl.DPOTrainer`` (LoRA: the reference model is the base with the adapter
disabled; full: TRL keeps a frozen copy)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .base import (
    DataReport,
    EngineTrainerMixin,
    MethodTrainer,
    common_args,
    preference_truncation,
    register,
    require_preference,
)

logger = logging.getLogger(__name__)


def preference_dataset(rows: Sequence[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` of conversational prompt/chosen/rejected rows."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])


@register("dpo")
class DPOMethod(MethodTrainer):
    """DPO on preference pairs."""

    perplexity_key = None  # the DPO loss is not a language-model loss

    def prepare_data(self, train: Any, evaluation: Any) -> DataReport:
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

    def config(self) -> Any:
        """The ``DPOConfig`` for this spec."""
        from trl import DPOConfig

        h = self.ctx.spec.hyper
        kwargs = common_args(self.ctx, has_eval=bool(self.eval_rows))
        return DPOConfig(**kwargs, beta=h.beta, max_length=h.max_length, dataset_num_proc=None)

    def trainer_class(self) -> type:
        """``DPOTrainer`` with the engine mixin."""
        from trl import DPOTrainer

        class EngineDPOTrainer(EngineTrainerMixin, DPOTrainer):
            pass

        return EngineDPOTrainer

    def build(self, callbacks: Sequence[Any]) -> None:
        """Construct the TRL trainer (it tokenizes the pairs with the chat template)."""
        _counters, bridge = self.make_bridge()
        cls = self.trainer_class()
        trainer = cls(
            model=self.model,
            args=self.config(),
            train_dataset=preference_dataset(self.train_rows),
            eval_dataset=preference_dataset(self.eval_rows) if self.eval_rows else None,
            processing_class=self.ctx.tokenizer,
            callbacks=[bridge, *callbacks],
        )
        self.attach(trainer)
        dropped = len(self.train_rows) - len(trainer.train_dataset)
        if dropped and self.report is not None:
            self.report.dropped = dropped
        if dropped:
            self.ctx.emitter.log("warning", f"{dropped} rows dropped: their prompt alone fills max_length")
