"""Preview: a page of rows rendered as the model sees them (chat template applied, trained parts marked)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from training.engine.data import ChatRenderer, Segment, render_segments, token_lengths

from .rows import RowStream
from .tokenizer_cache import get_tokenizer


def _segments(segments: list[Segment]) -> list[dict[str, Any]]:
    return [{"text": s.text, "trained": s.trained, "truncated": s.truncated} for s in segments]


def _completion_segments(
    tokenizer: Any,
    renderer: ChatRenderer,
    prompt: list[dict[str, str]],
    completion: list[dict[str, str]],
    max_length: int | None,
) -> list[dict[str, Any]]:
    """Prompt + completion of a preference pair: only the completion is trained (assistant turns inside the prompt
    are context, as DPO/ORPO see them)."""
    segments = _segments(
        render_segments(tokenizer, [*prompt, *completion], chat_template=renderer, max_length=max_length)
    )
    prefix = renderer.render(prompt, add_generation_prompt=True)
    if not "".join(s["text"] for s in segments).startswith(prefix):
        return segments
    out: list[dict[str, Any]] = []
    pos = 0
    for seg in segments:
        text, end = seg["text"], pos + len(seg["text"])
        if seg["trained"] and pos < len(prefix):
            cut = min(len(prefix), end) - pos
            out.append({**seg, "text": text[:cut], "trained": False})
            if text[cut:]:
                out.append({**seg, "text": text[cut:]})
        else:
            out.append(seg)
        pos = end
    merged: list[dict[str, Any]] = []
    for seg in out:  # join neighbours that now look the same
        if merged and merged[-1]["trained"] == seg["trained"] and merged[-1]["truncated"] == seg["truncated"]:
            merged[-1] = {**merged[-1], "text": merged[-1]["text"] + seg["text"]}
        else:
            merged.append(seg)
    return merged


def _text_segments(tokenizer: Any, text: str, tokens: int, max_length: int | None) -> list[dict[str, Any]]:
    """A plain-text row: all of it is trained (with EOS appended); the part past ``max_length`` is cut."""
    eos = str(getattr(tokenizer, "eos_token", None) or "")
    full = text if not eos or text.endswith(eos) else text + eos
    if max_length is None or tokens <= max_length:
        return [{"text": full, "trained": True, "truncated": False}]
    bos = tokens - len(tokenizer(full, add_special_tokens=False)["input_ids"])  # BOS the tokenizer adds, if any
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    keep = max(max_length - bos, 0)
    offsets = enc["offset_mapping"]
    cut = offsets[keep][0] if keep < len(offsets) else len(full)
    return [
        {"text": full[:cut], "trained": True, "truncated": False},
        {"text": full[cut:], "trained": False, "truncated": True},
    ]


def preview(
    paths: Sequence[str],
    *,
    fmt: str | None = None,
    column_mapping: Mapping[str, str] | None = None,
    tokenizer_path: str | None = None,
    offset: int = 0,
    limit: int = 20,
    chat_template: str | None = None,
    max_length: int | None = None,
) -> dict[str, Any]:
    """Rows ``offset .. offset+limit`` of the rows that convert, each rendered with the chat template and split into
    trained / untrained segments; ``count`` is the number of such rows (for pagination)."""
    if not isinstance(offset, int) or offset < 0:
        raise ValueError("offset must be a non-negative integer.")
    if not isinstance(limit, int) or limit < 1:
        raise ValueError("limit must be a positive integer.")
    stream = RowStream([str(p) for p in paths], fmt=fmt, column_mapping=column_mapping)
    page: list[tuple[int, int, dict[str, Any]]] = []
    count = 0
    for row in stream:
        if row.example is None:
            continue
        if offset <= count < offset + limit:
            page.append((count, row.line, row.example))
        count += 1
    results: list[dict[str, Any]] = []
    if page:
        tokenizer = get_tokenizer(tokenizer_path)
        renderer = ChatRenderer(tokenizer, chat_template)
        lengths = token_lengths(tokenizer, [ex for _, _, ex in page], chat_template=renderer)
        for (index, line, example), tokens in zip(page, lengths, strict=True):
            item: dict[str, Any] = {
                "index": index,
                "line": line,
                "messages": None,
                "preference": None,
                "tokens": tokens,
                "truncated": max_length is not None and tokens > max_length,
            }
            if "messages" in example:
                item["messages"] = example["messages"]
                if example.get("tools"):  # tool-calling rows: the tools list the model is shown
                    item["tools"] = example["tools"]
                item["segments"] = _segments(
                    render_segments(
                        tokenizer,
                        example["messages"],
                        chat_template=renderer,
                        max_length=max_length,
                        tools=example.get("tools"),
                    )
                )
            elif "text" in example:
                item["segments"] = _text_segments(tokenizer, example["text"], tokens, max_length)
            else:
                prompt = example["prompt"]
                item["segments"] = _completion_segments(tokenizer, renderer, prompt, example["chosen"], max_length)
                item["preference"] = {
                    "prompt": prompt,
                    "chosen": example["chosen"],
                    "rejected": example["rejected"],
                    "rejected_segments": _completion_segments(
                        tokenizer, renderer, prompt, example["rejected"], max_length
                    ),
                }
            results.append(item)
    return {
        "count": count,
        "offset": offset,
        "limit": limit,
        "format": stream.format.value if stream.format is not None else None,
        "results": results,
    }
