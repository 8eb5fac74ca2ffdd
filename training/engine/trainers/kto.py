"""Kahneman-Tversky Optimization with ``trl.KTOTrainer`` on unpaired preference data: single answers labelled
desirable or undesirable (LoRA: the reference model is the base with the adapter disabled; full: the model before
training when the reference is precomputed, else a frozen copy TRL keeps). The desirable and undesirable losses are
weighted so that their totals stay within the 1 : 1 to 4 : 3 band the KTO paper recommends, whatever the balance of
the data; the report shows the balance and the weights.

On CPU with LoRA or full weights on a llama-family model (one process) the trainer is ``PackedKTOTrainer``
(``kto_packed.py``): padding-free rows, completion-only log-probs and the reference computed once up front when the
run covers its data, else with each step on the same packed forward; anything else runs on stock TRL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from training.engine.errors import DataError

from .context import DataReport
from .dpo_packed import DpoPath
from .hf_trainer import EngineTrainerMixin
from .kto_packed import packed_kto_trainer_class, select_kto_path
from .preference import PreferenceTrainer
from .registry import register

if TYPE_CHECKING:
    from training.engine.data import LoadedData

__all__ = ["KTOMethod", "balance_weights"]


def balance_weights(desirable: int, undesirable: int) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) so that desirable_weight x desirable / (undesirable_weight x
    undesirable) lies in [1, 4/3]: the rarer side is weighted up, never down."""
    if not desirable or not undesirable:
        return 1.0, 1.0
    ratio = desirable / undesirable
    if ratio < 1:
        return round(1 / ratio, 4), 1.0
    if ratio > 4 / 3:
        return 1.0, round(ratio / (4 / 3), 4)
    return 1.0, 1.0


@register("kto")
class KTOMethod(PreferenceTrainer):
    """KTO on rows of ``{"prompt", "completion", "label"}``."""

    weights: tuple[float, float] = (1.0, 1.0)
    row_unit = "rows"

    def select_path(self, inputs: dict[str, Any]) -> DpoPath:
        """The packed CPU path for LoRA or full weights with a loss TRL computes from log-probs
        (``select_kto_path``)."""
        return select_kto_path(**inputs, loss_types=[self.ctx.spec.hyper.loss_type or "kto"])

    def prepare_data(self, train: LoadedData, evaluation: LoadedData | None) -> DataReport:
        """Check for labelled rows, hold out eval rows, count each side and choose the loss weights."""
        for loaded in (train, evaluation):
            if loaded is not None and not loaded.is_unpaired_preference:
                raise DataError(
                    f"KTO needs rows labelled desirable or undesirable (a conversation or prompt/completion with a "
                    f"boolean 'label'), but the dataset is {loaded.format.value} data; "
                    + ("use DPO or ORPO for chosen/rejected pairs." if loaded.is_preference else "use SFT for it.")
                )
        train_rows, eval_rows = self.split(train.examples, evaluation)
        desirable = sum(1 for r in train_rows if r["label"])
        undesirable = len(train_rows) - desirable
        if not desirable and not undesirable:
            raise DataError("No training rows are left after holding out the validation split.")
        self.weights = balance_weights(desirable, undesirable)
        self.train_rows, self.eval_rows, self.eval_examples = train_rows, eval_rows, eval_rows
        self.report = DataReport(
            format=train.format.value,
            rows=train.rows_read,
            train_rows=len(train_rows),
            eval_rows=len(eval_rows),
            row_errors=train.rows_skipped,
            truncated=0,
            dropped=0,
            sha256=train.sha256,
            files=tuple(train.files),
            first_row_errors=[str(e) for e in train.row_errors[:5]],
            labels={
                "desirable": desirable,
                "undesirable": undesirable,
                "desirable_weight": self.weights[0],
                "undesirable_weight": self.weights[1],
            },
        )
        self.ctx.emitter.log(
            "info",
            f"KTO balance: {desirable} desirable / {undesirable} undesirable training rows; loss weights "
            f"{self.weights[0]:g} (desirable) and {self.weights[1]:g} (undesirable)",
        )
        return self.report

    def args(self) -> dict[str, Any]:
        """``common_args``; KTO keeps its own columns (label, KL completions)."""
        return {**super().args(), "remove_unused_columns": False}

    def dataset(self, rows: Sequence[dict[str, Any]]) -> Any:
        """A ``datasets.Dataset`` of conversational prompt/completion/label rows."""
        from datasets import Dataset

        return Dataset.from_list(
            [{"prompt": r["prompt"], "completion": r["completion"], "label": bool(r["label"])} for r in rows]
        )

    def config(self) -> Any:
        """The ``KTOConfig`` for this spec."""
        from trl import KTOConfig

        h = self.ctx.spec.hyper
        return KTOConfig(
            **self.args(),
            beta=h.beta,
            loss_type=h.loss_type or "kto",
            max_length=h.max_length,
            desirable_weight=self.weights[0],
            undesirable_weight=self.weights[1],
            dataset_num_proc=None,
            **self.reference_args(),
        )

    def trainer_class(self) -> type:
        """``KTOTrainer`` with the engine mixin."""
        from trl import KTOTrainer

        class EngineKTOTrainer(EngineTrainerMixin, KTOTrainer):
            pass

        if self.path().packed:
            return packed_kto_trainer_class(EngineKTOTrainer)
        return EngineKTOTrainer
