"""Fast, exact token counts of canonical examples as the model sees them (rendered with the chat template), and
length statistics for reports."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from training.engine.errors import DataError

from .counting import FastTokenCounter
from .spans import as_renderer
from .templates import ChatRenderer

logger = logging.getLogger(__name__)

_VERIFY_ROWS = 256


def _example_text(renderer: ChatRenderer, example: Mapping[str, Any], eos: str) -> str:
    if "messages" in example:
        return renderer.render_for_counting(example["messages"], tools=example.get("tools"))
    if "text" in example:
        text = str(example["text"])
        return text if not eos or text.endswith(eos) else text + eos
    if "prompt" in example and "chosen" in example:  # preference: the prompt with the chosen answer
        return renderer.render_for_counting([*example["prompt"], *example["chosen"]])
    if "prompt" in example and "completion" in example:  # KTO: the prompt with its (labelled) completion
        return renderer.render_for_counting([*example["prompt"], *example["completion"]])
    raise DataError(
        "an example must hold 'messages', 'text', 'prompt'/'chosen'/'rejected' or 'prompt'/'completion'/'label'."
    )


class TextCounter:
    """Counts tokens of many rendered texts (``add_special_tokens=False``), fast and exact.

    Uses ``FastTokenCounter`` when the tokenizer's layout supports it, checked against the real tokenizer on the
    first rows (any disagreement switches to full batch encoding for good), else batch encoding.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._fast = FastTokenCounter.for_tokenizer(tokenizer)
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._verified = 0

    def exact(self, texts: Sequence[str]) -> list[int]:
        """Counts by encoding every text in full (batched, in Rust for fast tokenizers)."""
        if self._backend is not None:
            encode = getattr(self._backend, "encode_batch_fast", None) or self._backend.encode_batch
            return [len(e.ids) for e in encode(list(texts), add_special_tokens=False)]
        return [len(x) for x in self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def count(self, texts: Sequence[str]) -> list[int]:
        """Token counts of ``texts``."""
        if self._fast is not None:
            counts = self._fast.count(texts)
            if self._verified < _VERIFY_ROWS:
                n = min(len(texts), _VERIFY_ROWS - self._verified)
                if counts[:n] != self.exact(texts[:n]):
                    logger.warning("the fast token counter disagrees with the tokenizer; using full encoding")
                    self._fast = None
                    return self.exact(texts)
                self._verified += n
            return counts
        return self.exact(texts)


def _batched(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def token_lengths(
    tokenizer: Any,
    examples: Iterable[Mapping[str, Any]],
    *,
    chat_template: str | ChatRenderer | None = None,
    batch_size: int = 1000,
) -> list[int]:
    """Token counts of many canonical examples, rendered with the chat template (TEXT: text + EOS; preference:
    prompt + chosen). Equal to ``length_before_truncation`` of ``tokenize_example``.

    Fast: rows are rendered with ``ChatRenderer.render_for_counting`` and counted in batches by ``TextCounter``
    (both checked against the exact path on the first rows). Pass a ``ChatRenderer`` to reuse it across calls.
    """
    renderer = as_renderer(tokenizer, chat_template)
    eos = str(getattr(tokenizer, "eos_token", None) or "")
    bos_extra = len(tokenizer("", add_special_tokens=True)["input_ids"])  # BOS etc. that TEXT rows get
    counter = TextCounter(tokenizer)
    out: list[int] = []
    for batch in _batched(examples, max(1, batch_size)):
        counts = counter.count([_example_text(renderer, ex, eos) for ex in batch])
        out.extend(
            c + bos_extra if "messages" not in ex and "text" in ex else c for c, ex in zip(counts, batch, strict=True)
        )
    return out


def preference_lengths(
    tokenizer: Any,
    examples: Iterable[Mapping[str, Any]],
    *,
    chat_template: str | ChatRenderer | None = None,
    batch_size: int = 1000,
) -> list[tuple[int, int, int]]:
    """(prompt, prompt + chosen, prompt + rejected) token counts of canonical preference examples, the prompt
    rendered with the generation prompt as TRL does."""
    renderer = as_renderer(tokenizer, chat_template)
    counter = TextCounter(tokenizer)
    out: list[tuple[int, int, int]] = []
    for batch in _batched(examples, max(1, batch_size)):
        texts: list[str] = []
        for ex in batch:
            prompt = list(ex["prompt"])
            texts.append(renderer.render_for_counting(prompt, add_generation_prompt=True))
            texts.append(renderer.render_for_counting([*prompt, *ex["chosen"]]))
            texts.append(renderer.render_for_counting([*prompt, *ex["rejected"]]))
        counts = counter.count(texts)
        out.extend(zip(counts[0::3], counts[1::3], counts[2::3], strict=True))
    return out


def length_stats(lengths: Sequence[int], *, max_length: int | None = None) -> dict[str, Any]:
    """Summary of token lengths for reports: count, min, max, mean, p50, p95, p99, and rows over ``max_length``."""
    if not lengths:
        return {"count": 0}
    ordered = sorted(lengths)
    n = len(ordered)

    def pct(q: float) -> int:
        return ordered[min(n - 1, int(q * (n - 1) + 0.5))]

    stats: dict[str, Any] = {
        "count": n,
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(sum(ordered) / n, 1),
        "p50": pct(0.5),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "total": sum(ordered),
    }
    if max_length is not None:
        stats["max_length"] = max_length
        stats["over_max_length"] = sum(1 for x in ordered if x > max_length)
    return stats
