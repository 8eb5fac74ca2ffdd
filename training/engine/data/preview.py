"""Previews of what is trained (the conversation split into trained / untrained / cut-off pieces) and plain-text
chunking on token boundaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.engine.errors import ConfigError, DataError

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
from .tokenize import tokenize_text


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of the rendered conversation for previews: its text, whether it is trained, whether it is cut off."""

    text: str
    trained: bool
    truncated: bool = False


def render_segments(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    chat_template: str | ChatRenderer | None = None,
    max_length: int | None = None,
    train_on: TrainOn = "assistant",
    train_from: int = 0,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> list[Segment]:
    """The conversation (with ``tools``) as the model sees it, split into trained / untrained pieces; text past
    ``max_length`` tokens comes last with ``truncated=True``. Only assistant turns at index >= ``train_from`` are
    marked (with their tool calls; tool results are untrained context)."""
    check_train_on(train_on)
    renderer = as_renderer(tokenizer, chat_template)
    text, spans = assistant_spans(renderer, messages, train_from, tools)
    if train_on == "all":
        spans = [(0, len(text))]
    ids, flags, offsets = label_tokens(tokenizer, text, spans)
    cut = len(text)
    if max_length is not None and len(ids) > max_length:
        if offsets is not None:
            cut = offsets[max_length][0] if max_length < len(offsets) else len(text)
        else:
            cut = len(tokenizer.decode(ids[:max_length]))
    if offsets is None:  # slow tokenizer: character spans are exact anyway
        bounds = sorted({0, cut, *[min(p, cut) for s in spans for p in s]})
        pieces = []
        for a, b in zip(bounds, bounds[1:], strict=False):
            inside = any(s <= a < e for s, e in spans)
            pieces.append(Segment(text[a:b], inside))
    else:
        pieces = []
        start, flag = 0, flags[0] if flags else False
        for t in range(1, len(ids)):
            s = offsets[t][0]
            if s >= cut:
                break
            if flags[t] != flag:
                pieces.append(Segment(text[start:s], flag))
                start, flag = s, flags[t]
        pieces.append(Segment(text[start:cut], flag))
    out = [p for p in pieces if p.text]
    if cut < len(text):
        out.append(Segment(text[cut:], False, truncated=True))
    return out


def preview_segments(
    tokenizer: Any,
    example: Mapping[str, Any],
    *,
    chat_template: str | ChatRenderer | None = None,
    max_length: int | None = None,
    train_on: TrainOn = "assistant",
) -> list[Segment]:
    """``render_segments`` for any canonical example: conversations, TEXT (all trained, plus EOS), and preference
    pairs (prompt + chosen, the chosen answer marked trained)."""
    train_from = 0
    if "messages" in example:
        messages = example["messages"]
    elif "prompt" in example and "chosen" in example:
        messages = [*example["prompt"], *example["chosen"]]
        train_from = len(example["prompt"])
    elif "text" in example:
        ex = tokenize_text(tokenizer, str(example["text"]), max_length=10**9)
        text = tokenizer.decode(ex.input_ids)
        if max_length is None or ex.length_before_truncation <= max_length:
            return [Segment(text, True)]
        kept = tokenizer.decode(ex.input_ids[:max_length])
        return [Segment(kept, True), Segment(text[len(kept) :], False, truncated=True)]
    else:
        raise DataError("an example must hold 'messages', 'text' or 'prompt'/'chosen'/'rejected'.")
    return render_segments(
        tokenizer,
        messages,
        chat_template=chat_template,
        max_length=max_length,
        train_on=train_on,
        train_from=train_from,
        tools=example.get("tools"),
    )


def chunk_text(tokenizer: Any, text: str, *, max_length: int, overlap: int = 0) -> list[str]:
    """Split plain text into pieces of at most ``max_length`` tokens, consecutive pieces sharing ``overlap`` tokens.

    Cuts fall on token boundaries (character offsets of the fast tokenizer). Leave room for BOS/EOS in
    ``max_length`` if the pieces will be trained with them.
    """
    check_max_length(max_length)
    if not isinstance(overlap, int) or overlap < 0 or overlap >= max_length:
        raise ConfigError(f"overlap must be between 0 and max_length - 1 ({max_length - 1}), not {overlap!r}.")
    if not text:
        return []
    ids, offsets = encode_with_offsets(tokenizer, text)
    if len(ids) <= max_length:
        return [text]
    stride = max_length - overlap
    chunks: list[str] = []
    for start in range(0, len(ids), stride):
        end = min(start + max_length, len(ids))
        if offsets is not None:
            chunks.append(text[offsets[start][0] : offsets[end - 1][1]])
        else:
            chunks.append(tokenizer.decode(ids[start:end]))
        if end == len(ids):
            break
    return chunks
