"""The building blocks of assistant-only labels: render a conversation, find the character spans of its trained
assistant turns, and mark the tokens that overlap them.

Masking works for any chat template: the conversation is rendered in full, and the character span of every assistant
turn is found by rendering the prefix before it (with the generation prompt) and after it; the span runs from the end
of the assistant header through the end-of-turn marker (e.g. ``<|im_end|>``), which is trained so the model learns to
stop. Tokens are labelled through the fast tokenizer's character offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from training.engine.errors import ConfigError, DataError

from .templates import ChatRenderer

logger = logging.getLogger(__name__)

TrainOn = Literal["assistant", "all"]


def check_train_on(train_on: str) -> None:
    """``ConfigError`` unless ``train_on`` is ``assistant`` or ``all``."""
    if train_on not in ("assistant", "all"):
        raise ConfigError(f"train_on must be 'assistant' or 'all', not {train_on!r}.")


def check_max_length(max_length: int) -> None:
    """``ConfigError`` unless ``max_length`` is a positive integer."""
    if not isinstance(max_length, int) or max_length < 1:
        raise ConfigError(f"max_length must be a positive integer, not {max_length!r}.")


def as_renderer(tokenizer: Any, chat_template: str | ChatRenderer | None) -> ChatRenderer:
    """``chat_template`` itself when it is a ``ChatRenderer``, else a renderer for it."""
    if isinstance(chat_template, ChatRenderer):
        return chat_template
    return ChatRenderer(tokenizer, chat_template)


def assistant_spans(
    renderer: ChatRenderer,
    messages: Sequence[Mapping[str, Any]],
    first: int = 0,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[str, list[tuple[int, int]]]:
    """Render ``messages`` (with ``tools``) and return (text, character spans of the trained assistant turns from
    index ``first``). Assistant turns include their tool calls; tool results are context like user turns."""
    renderer = renderer.for_conversation(messages, tools)
    full = renderer.render(messages, tools=tools)
    eot = renderer.eot
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message.get("role") != "assistant" or i < first:
            continue
        start = end = -1
        if i > 0:
            try:
                before = renderer.render(messages[:i], add_generation_prompt=True, tools=tools)
                after = renderer.render(messages[: i + 1], tools=tools)
            except DataError:
                before = after = ""
            if before and after.startswith(before) and full.startswith(after) and len(before) >= cursor:
                start, end = len(before), len(after)
        if start < 0:  # the template renders prefixes differently: find the content itself
            content = str(message.get("content", ""))
            for probe in (content, content.strip()):
                k = full.find(probe, cursor) if probe else -1
                if k >= 0:
                    start, end = k, k + len(probe)
                    nxt = full.find(eot, end) if eot else -1
                    if nxt >= 0 and not full[end:nxt].strip():
                        end = nxt + len(eot)
                    break
            if start < 0:
                logger.warning("assistant turn %d not found in the rendered conversation; it is not trained", i)
                continue
        elif eot:
            k = full.rfind(eot, start, end)
            if k >= 0:
                end = k + len(eot)
            else:
                end = start + len(full[start:end].rstrip())
        spans.append((start, end))
        cursor = end
    return full, spans


def encode_with_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
    """Token ids of ``text`` and their character offsets (None for slow tokenizers)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]  # type: ignore[misc]
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]), None


def label_tokens(
    tokenizer: Any, text: str, spans: list[tuple[int, int]]
) -> tuple[list[int], list[bool], list[tuple[int, int]] | None]:
    """Token ids of ``text`` and whether each overlaps a trained span (offsets; piecewise for slow tokenizers)."""
    ids, offsets = encode_with_offsets(tokenizer, text)
    if offsets is not None:
        flags = [False] * len(ids)
        j = 0
        for t, (s, e) in enumerate(offsets):
            while j < len(spans) and spans[j][1] <= s:
                j += 1
            if j < len(spans) and s < spans[j][1] and max(e, s + 1) > spans[j][0]:
                flags[t] = True
        return ids, flags, offsets
    # Slow tokenizer: encode the untrained and trained pieces separately and concatenate.
    ids, flags, pos = [], [], 0
    for s, e in [*spans, (len(text), len(text))]:
        for piece, trained in ((text[pos:s], False), (text[s:e], True)):
            if piece:
                piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
                ids.extend(piece_ids)
                flags.extend([trained] * len(piece_ids))
        pos = e
    return ids, flags, None
