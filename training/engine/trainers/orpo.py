"""Odds Ratio Preference Optimization with ``trl.experimental.orpo.ORPOTrainer`` (no reference model: an SFT loss on
the chosen response plus ``beta`` x the log odds ratio of chosen over rejected)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .base import EngineTrainerMixin, register
from .dpo import DPOMethod, preference_dataset

logger = logging.getLogger(__name__)


@register("orpo")
class ORPOMethod(DPOMethod):
    """ORPO on preference pairs; its eval perplexity is that of the chosen responses (``eval_nll_loss``)."""

    perplexity_key = "eval_nll_loss"

    def config(self) -> Any:
        """The ``ORPOConfig`` for this spec."""
        from trl.experimental.orpo import ORPOConfig

        h = self.ctx.spec.hyper
        kwargs = self._args()
        return ORPOConfig(**kwargs, beta=h.beta, max_length=h.max_length, dataset_num_proc=None)

    def _args(self) -> dict[str, Any]:
        from .base import common_args

        kwargs = common_args(self.ctx, has_eval=bool(self.eval_rows))
        kwargs["remove_unused_columns"] = False
        return kwargs

    def trainer_class(self) -> type:
        """``ORPOTrainer`` with the engine mixin."""
        from trl.experimental.orpo import ORPOTrainer

        class EngineORPOTrainer(EngineTrainerMixin, ORPOTrainer):
            pass

        return EngineORPOTrainer

    def build(self, callbacks: Sequence[Any]) -> None:
        """Construct the TRL trainer (it renders the pairs with the chat template and tokenizes them)."""
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
