"""Preprocessing into a new canonical JSON Lines file (the steps are in ``steps``) and deterministic train/validation
splits. Rows stream through the steps as generators."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .rows import ProgressEstimator, RowStream
from .steps import OPS, Example, Rows, StepError, kind_of, parse_steps
from .tokenizer_cache import get_tokenizer

__all__ = ["OPS", "StepError", "preprocess", "split"]

logger = logging.getLogger(__name__)


def _write_jsonl(path: str, rows: Rows) -> int:
    n = 0
    dumps = json.dumps
    with open(path, "w", encoding="utf-8", errors="replace", newline="\n") as fh:
        for example in rows:
            fh.write(dumps(example, ensure_ascii=False))
            fh.write("\n")
            n += 1
    return n


class _Source:
    """Canonical examples of the input rows; counts what was read and what could not be converted."""

    def __init__(
        self,
        paths: Sequence[str],
        fmt: str | None,
        column_mapping: Mapping[str, str] | None,
        progress: Callable[[float], None] | None,
    ) -> None:
        self.stream = RowStream([str(p) for p in paths], fmt=fmt, column_mapping=column_mapping)
        self.estimator = ProgressEstimator(self.stream.paths, progress)
        self.rows_in = 0
        self.rows_invalid = 0
        self.first_kind: str | None = None

    def __iter__(self) -> Rows:
        for row in self.stream:
            self.rows_in += 1
            if self.rows_in % 2000 == 0:
                self.estimator.update(self.stream.file_index, row.line, scale=0.97)
            if row.example is None:
                self.rows_invalid += 1
                continue
            yield row.example

    def peek_kind(self) -> tuple[str | None, Rows]:
        """The canonical shape of the first valid example, and an iterator that still yields it."""
        rows = iter(self)
        for example in rows:
            kind = kind_of(example)

            def chained(first: Example = example) -> Rows:
                yield first
                yield from rows

            return kind, chained()
        return None, iter(())

    def problem(self) -> str | None:
        """A message when the input has no usable rows."""
        if self.stream.issues:
            return "; ".join(issue.message for issue in self.stream.issues)
        return None


def preprocess(
    paths: Sequence[str],
    *,
    fmt: str | None = None,
    column_mapping: Mapping[str, str] | None = None,
    steps: Sequence[Mapping[str, Any]],
    out_path: str,
    tokenizer_path: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Apply ``steps`` in order and write one canonical JSON Lines file to ``out_path``.

    Rows that do not convert are left out (``rows_invalid``). Raises ``StepError`` (a ``ValueError``) for an unknown
    step, bad options, or a step that does not fit the data (chunking conversations, templating preference pairs).
    """
    pipeline = parse_steps(steps)
    source = _Source(paths, fmt, column_mapping, progress)
    kind, rows = source.peek_kind()
    if kind is None:
        raise StepError(
            f"The dataset has no usable rows to preprocess{': ' + source.problem() if source.problem() else '.'}"
        )
    out_kind = kind
    for step in pipeline:
        out_kind = step.output_kind(out_kind)
    if any(step.needs_tokenizer for step in pipeline):
        tokenizer = get_tokenizer(tokenizer_path)
        for step in pipeline:
            step.tokenizer = tokenizer
    for step in pipeline:
        rows = step.apply(rows)
    rows_out = _write_jsonl(out_path, rows)
    if progress is not None:
        progress(1.0)
    logger.info("preprocessed %d rows into %d (%s)", source.rows_in, rows_out, out_kind)
    return {
        "rows_in": source.rows_in,
        "rows_invalid": source.rows_invalid,
        "rows_out": rows_out,
        "format": out_kind,
        "steps": [step.report() for step in pipeline],
    }


def split(
    paths: Sequence[str],
    *,
    fmt: str | None = None,
    column_mapping: Mapping[str, str] | None = None,
    validation_ratio: float,
    seed: int,
    train_out: str,
    validation_out: str,
) -> dict[str, Any]:
    """Split the rows that convert into train and validation JSON Lines files (canonical rows, original order).

    The validation rows are ``round(n * validation_ratio)`` (at least 1, leaving at least 1 for training) chosen by
    ``random.Random(seed)``: the same input, ratio and seed always give the same split.
    """
    if (
        isinstance(validation_ratio, bool)
        or not isinstance(validation_ratio, (int, float))
        or not (0.0 < validation_ratio < 1.0)
    ):
        raise ValueError(f"validation_ratio must be between 0 and 1 (exclusive), not {validation_ratio!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, not {seed!r}.")
    count = sum(1 for _ in _Source(paths, fmt, column_mapping, None))
    if count < 2:
        raise ValueError(f"A split needs at least 2 usable rows; the dataset has {count}.")
    n_val = min(max(round(count * validation_ratio), 1), count - 1)
    chosen = set(random.Random(seed).sample(range(count), n_val))
    train_rows = validation_rows = 0
    dumps = json.dumps
    with (
        open(train_out, "w", encoding="utf-8", errors="replace", newline="\n") as train,
        open(validation_out, "w", encoding="utf-8", errors="replace", newline="\n") as validation,
    ):
        for index, example in enumerate(_Source(paths, fmt, column_mapping, None)):
            if index in chosen:
                validation.write(dumps(example, ensure_ascii=False) + "\n")
                validation_rows += 1
            else:
                train.write(dumps(example, ensure_ascii=False) + "\n")
                train_rows += 1
    return {
        "train_rows": train_rows,
        "validation_rows": validation_rows,
        "seed": seed,
        "validation_ratio": validation_ratio,
    }
