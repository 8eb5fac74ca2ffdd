"""Tokenization with assistant-only labels (see ``spans`` for how turns are found) and the label checks; token
counting lives in ``lengths`` and previews in ``preview``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from training.engine.errors import ConfigError, DataError
from training.engine.hyperparams import PACKING

from .counting import FastTokenCounter
from .formats import DatasetFormat, is_preference, is_tool_format, is_unpaired_preference, parse_format
from .lengths import TextCounter, length_stats, preference_lengths, token_lengths
from .loading import LoadedData
from .spans import (
    TrainOn,
    as_renderer,
    assistant_spans,
    check_max_length,
    check_train_on,
    encode_with_offsets,
    label_tokens,
)
from .templates import ChatRenderer

logger = logging.getLogger(__name__)

__all__ = [
    "IGNORE_INDEX",
    "FastTokenCounter",
    "LabelReport",
    "TextCounter",
    "TokenizedExample",
    "TrainOn",
    "as_columns",
    "build_sft_dataset",
    "pack_examples",
    "wants_packing",
    "check_labels",
    "length_stats",
    "preference_lengths",
    "token_lengths",
    "tokenize_conversation",
    "tokenize_example",
    "tokenize_text",
]

IGNORE_INDEX = -100
UNLIMITED = 1 << 40  # "max_length" of a row that is packed afterwards: never cut on its own


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    """One training row: token ids, labels (-100 where not trained) and what truncation did to it."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool
    num_trained: int
    length_before_truncation: int
    trained_before_truncation: int = 0


@dataclass(frozen=True)
class LabelReport:
    """Label statistics over a tokenized dataset."""

    rows: int
    all_masked_rows: int
    truncated_rows: int
    truncated_away_rows: int
    trained_tokens: int
    total_tokens: int
    eot_trained_rows: int
    eot_token: str
    packed_blocks: int = 0  # > 0 when the rows were packed into max_length blocks instead of truncated

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return asdict(self)


def _make_example(ids: list[int], flags: list[bool], max_length: int) -> TokenizedExample:
    labels = [tok if flag else IGNORE_INDEX for tok, flag in zip(ids, flags, strict=True)]
    trained_before = sum(flags)
    length = len(ids)
    if length > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    num_trained = trained_before if length <= max_length else sum(1 for x in labels if x != IGNORE_INDEX)
    return TokenizedExample(
        input_ids=ids,
        labels=labels,
        truncated=length > max_length,
        num_trained=num_trained,
        length_before_truncation=length,
        trained_before_truncation=trained_before,
    )


def tokenize_conversation(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    max_length: int,
    chat_template: str | ChatRenderer | None = None,
    train_on: TrainOn = "assistant",
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> TokenizedExample:
    """Tokenize a canonical conversation; only assistant content (with its tool calls) and its end-of-turn marker
    are trained (``train_on="all"`` trains every token); tool results are context. Sequences longer than
    ``max_length`` are cut on the right."""
    check_train_on(train_on)
    check_max_length(max_length)
    renderer = as_renderer(tokenizer, chat_template)
    if train_on == "all":
        text = renderer.render(messages, tools=tools)
        ids, _ = encode_with_offsets(tokenizer, text)
        return _make_example(ids, [True] * len(ids), max_length)
    text, spans = assistant_spans(renderer, messages, tools=tools)
    ids, flags, _ = label_tokens(tokenizer, text, spans)
    return _make_example(ids, flags, max_length)


def _eos_id(tokenizer: Any) -> int | None:
    eos = getattr(tokenizer, "eos_token_id", None)
    return eos if isinstance(eos, int) else None


def tokenize_text(tokenizer: Any, text: str, *, max_length: int, add_eos: bool = True) -> TokenizedExample:
    """Tokenize plain text (with the tokenizer's own BOS if it adds one) plus EOS; every token is trained."""
    check_max_length(max_length)
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    eos = _eos_id(tokenizer)
    if add_eos and eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return _make_example(ids, [True] * len(ids), max_length)


def tokenize_example(
    tokenizer: Any,
    example: Mapping[str, Any],
    *,
    max_length: int,
    chat_template: str | ChatRenderer | None = None,
    train_on: TrainOn = "assistant",
) -> TokenizedExample:
    """Tokenize one canonical SFT example (``{"messages": ...}`` or ``{"text": ...}``)."""
    if "messages" in example:
        return tokenize_conversation(
            tokenizer,
            example["messages"],
            max_length=max_length,
            chat_template=chat_template,
            train_on=train_on,
            tools=example.get("tools"),
        )
    if "text" in example:
        return tokenize_text(tokenizer, str(example["text"]), max_length=max_length)
    raise DataError("a preference example (prompt/chosen/rejected) cannot be tokenized for SFT; use DPO or ORPO.")


def _eot_checker(tokenizer: Any, eot: str) -> Any:
    """A predicate telling whether a tokenized row trains the end-of-turn marker."""
    if not eot:
        return lambda ex: False
    ids = list(tokenizer(eot, add_special_tokens=False)["input_ids"])
    if len(ids) == 1:  # a special token: trained positions hold their id in labels
        eot_id = ids[0]
        return lambda ex: eot_id in ex.labels

    def decoded(ex: TokenizedExample) -> bool:  # a marker made of several tokens may merge with its neighbours
        return eot in tokenizer.decode([t for t in ex.labels if t != IGNORE_INDEX])

    return decoded


def check_labels(
    examples: Sequence[TokenizedExample],
    tokenizer: Any,
    chat_template: str | ChatRenderer | None = None,
    *,
    max_length: int | None = None,
    raise_on_error: bool = True,
) -> LabelReport:
    """Count trained/masked/truncated rows; raise ``DataError`` when nothing is trained or the end-of-turn marker
    is never trained (the model would never learn to stop)."""
    renderer = as_renderer(tokenizer, chat_template)
    eot = renderer.eot
    trains_eot = _eot_checker(tokenizer, eot)
    all_masked = truncated = truncated_away = trained = total = eot_rows = 0
    for ex in examples:
        total += len(ex.input_ids)
        trained += ex.num_trained
        if ex.truncated:
            truncated += 1
        if ex.num_trained == 0:
            all_masked += 1
            if ex.truncated and ex.trained_before_truncation > 0:
                truncated_away += 1
        elif trains_eot(ex):
            eot_rows += 1
    report = LabelReport(
        rows=len(examples),
        all_masked_rows=all_masked,
        truncated_rows=truncated,
        truncated_away_rows=truncated_away,
        trained_tokens=trained,
        total_tokens=total,
        eot_trained_rows=eot_rows,
        eot_token=eot,
    )
    if not raise_on_error:
        return report
    if not examples:
        raise DataError("There are no examples to train on.")
    if all_masked == len(examples):
        limit = f"max_length={max_length}" if max_length else "max_length"
        raise DataError(
            f"Every label is masked: no assistant tokens are left to train on after truncation to {limit} "
            f"({truncated} of {len(examples)} rows were truncated); raise max_length or check the format/mapping."
        )
    if eot_rows == 0:
        raise DataError(
            f"The end-of-turn token {eot or '(none)'} is never trained: the model would never learn to stop. "
            "Use a chat template that closes assistant turns with it, or raise max_length if rows are cut before it."
        )
    if all_masked:
        logger.warning(
            "%d of %d rows have no trained token (%d cut away by truncation)",
            all_masked,
            len(examples),
            truncated_away,
        )
    return report


def pack_examples(examples: Sequence[TokenizedExample], max_length: int) -> list[TokenizedExample]:
    """Join whole rows (each already ends with EOS or its end-of-turn marker) into one stream and cut it into blocks
    of ``max_length`` tokens: no token is dropped; the last block may be shorter. Labels travel with their tokens."""
    check_max_length(max_length)
    ids: list[int] = []
    labels: list[int] = []
    for ex in examples:
        ids.extend(ex.input_ids)
        labels.extend(ex.labels)
    blocks = []
    for start in range(0, len(ids), max_length):
        block_ids, block_labels = ids[start : start + max_length], labels[start : start + max_length]
        trained = sum(1 for x in block_labels if x != IGNORE_INDEX)
        if len(block_ids) < 2 or not trained:  # nothing to learn from (a lone last token, or context only)
            continue
        blocks.append(
            TokenizedExample(
                input_ids=block_ids,
                labels=block_labels,
                truncated=False,
                num_trained=trained,
                length_before_truncation=len(block_ids),
                trained_before_truncation=trained,
            )
        )
    return blocks


def kto_for_sft_message(loaded: LoadedData) -> str:
    """Why SFT refuses KTO data, and the two ways forward."""
    undesirable = sum(1 for ex in loaded.examples if ex.get("label") is False)
    return (
        f"The dataset is KTO data: each row's 'label' marks its answer desirable or not ({undesirable} of "
        f"{len(loaded.examples)} rows are undesirable), and SFT would teach the model the undesirable answers too. "
        "Train it with method 'kto', or make a version with the preprocessing step 'Keep only desirable rows' "
        "(keep_desirable) and train SFT on that."
    )


def wants_packing(packing: str, fmt: DatasetFormat | str | None) -> bool:
    """``auto`` packs raw text (continued pre-training); ``on`` packs every SFT dataset; ``off`` never packs."""
    if packing not in PACKING:
        raise ConfigError(f"packing must be one of {', '.join(PACKING)}, not {packing!r}.")
    return packing == "on" or (packing == "auto" and parse_format(fmt) is DatasetFormat.TEXT)


def build_sft_dataset(
    loaded: LoadedData,
    tokenizer: Any,
    *,
    max_length: int,
    chat_template: str | None = None,
    train_on: TrainOn = "assistant",
    packing: str = "auto",
) -> tuple[list[TokenizedExample], LabelReport]:
    """Tokenize every canonical SFT example and check the labels; rows with nothing trained are left out of the
    returned list (the report counts them). With packing (``wants_packing``) whole rows are joined and cut into
    ``max_length`` blocks instead of truncated one by one, so no token is lost. Raises ``DataError`` from
    ``check_labels``."""
    if is_preference(loaded.format):
        raise DataError(f"The dataset is a preference dataset ({loaded.format.value}); train it with DPO or ORPO.")
    if is_unpaired_preference(loaded.format):
        raise DataError(kto_for_sft_message(loaded))
    check_train_on(train_on)
    check_max_length(max_length)
    pack = wants_packing(packing, loaded.format)
    renderer = ChatRenderer(tokenizer, chat_template)
    if is_tool_format(loaded.format):  # one template for every row, so the end-of-turn check holds for all
        renderer = renderer.tool_renderer()
    row_limit = UNLIMITED if pack else max_length
    tokenized = [
        tokenize_example(tokenizer, ex, max_length=row_limit, chat_template=renderer, train_on=train_on)
        for ex in loaded.examples
    ]
    report = check_labels(tokenized, tokenizer, renderer, max_length=row_limit)
    rows = [ex for ex in tokenized if ex.num_trained > 0]
    if not pack:
        return rows, report
    blocks = pack_examples(rows, max_length)
    if not blocks:
        raise DataError(f"Packing the rows into blocks of {max_length} tokens left nothing to train on.")
    return blocks, replace(report, packed_blocks=len(blocks))


def as_columns(examples: Iterable[TokenizedExample]) -> dict[str, list[list[int]]]:
    """``{"input_ids": [...], "labels": [...]}`` for ``datasets.Dataset.from_dict`` (TRL uses "labels" as given)."""
    input_ids: list[list[int]] = []
    labels: list[list[int]] = []
    for ex in examples:
        input_ids.append(ex.input_ids)
        labels.append(ex.labels)
    return {"input_ids": input_ids, "labels": labels}
