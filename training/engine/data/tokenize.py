"""Tokenization with assistant-only labels, label checks, previews, fast token counting and text chunking.

Masking works for any chat template: the conversation is rendered in full, and the character span of every assistant
turn is found by rendering the prefix before it (with the generation prompt) and after it; the span runs from the end
of the assistant header through the end-of-turn marker (e.g. ``<|im_end|>``), which is trained so the model learns to
stop. Tokens are labelled through the fast tokenizer's character offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from training.engine.errors import ConfigError, DataError

from .counting import FastTokenCounter
from .formats import is_preference
from .loading import LoadedData
from .templates import ChatRenderer

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
TrainOn = Literal["assistant", "all"]
_VERIFY_ROWS = 256


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    """One training row: token ids, labels (-100 where not trained) and what truncation did to it."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool
    num_trained: int
    length_before_truncation: int
    trained_before_truncation: int = 0


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of the rendered conversation for previews: its text, whether it is trained, whether it is cut off."""

    text: str
    trained: bool
    truncated: bool = False


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return asdict(self)


def _check_train_on(train_on: str) -> None:
    if train_on not in ("assistant", "all"):
        raise ConfigError(f"train_on must be 'assistant' or 'all', not {train_on!r}.")


def _renderer(tokenizer: Any, chat_template: str | ChatRenderer | None) -> ChatRenderer:
    if isinstance(chat_template, ChatRenderer):
        return chat_template
    return ChatRenderer(tokenizer, chat_template)


def _assistant_spans(
    renderer: ChatRenderer, messages: Sequence[Mapping[str, Any]], first: int = 0
) -> tuple[str, list[tuple[int, int]]]:
    """Render ``messages`` and return (text, character spans of the trained assistant turns from index ``first``)."""
    full = renderer.render(messages)
    eot = renderer.eot
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message.get("role") != "assistant" or i < first:
            continue
        start = end = -1
        if i > 0:
            try:
                before = renderer.render(messages[:i], add_generation_prompt=True)
                after = renderer.render(messages[: i + 1])
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


def _encode_with_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]  # type: ignore[misc]
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]), None


def _label_tokens(
    tokenizer: Any, text: str, spans: list[tuple[int, int]]
) -> tuple[list[int], list[bool], list[tuple[int, int]] | None]:
    """Token ids of ``text`` and whether each overlaps a trained span (offsets; piecewise for slow tokenizers)."""
    ids, offsets = _encode_with_offsets(tokenizer, text)
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


def _check_max_length(max_length: int) -> None:
    if not isinstance(max_length, int) or max_length < 1:
        raise ConfigError(f"max_length must be a positive integer, not {max_length!r}.")


def tokenize_conversation(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    max_length: int,
    chat_template: str | ChatRenderer | None = None,
    train_on: TrainOn = "assistant",
) -> TokenizedExample:
    """Tokenize a canonical conversation; only assistant content and its end-of-turn marker are trained
    (``train_on="all"`` trains every token). Sequences longer than ``max_length`` are cut on the right."""
    _check_train_on(train_on)
    _check_max_length(max_length)
    renderer = _renderer(tokenizer, chat_template)
    if train_on == "all":
        text = renderer.render(messages)
        ids, _ = _encode_with_offsets(tokenizer, text)
        return _make_example(ids, [True] * len(ids), max_length)
    text, spans = _assistant_spans(renderer, messages)
    ids, flags, _ = _label_tokens(tokenizer, text, spans)
    return _make_example(ids, flags, max_length)


def _eos_id(tokenizer: Any) -> int | None:
    eos = getattr(tokenizer, "eos_token_id", None)
    return eos if isinstance(eos, int) else None


def tokenize_text(tokenizer: Any, text: str, *, max_length: int, add_eos: bool = True) -> TokenizedExample:
    """Tokenize plain text (with the tokenizer's own BOS if it adds one) plus EOS; every token is trained."""
    _check_max_length(max_length)
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
            tokenizer, example["messages"], max_length=max_length, chat_template=chat_template, train_on=train_on
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
    renderer = _renderer(tokenizer, chat_template)
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


def build_sft_dataset(
    loaded: LoadedData,
    tokenizer: Any,
    *,
    max_length: int,
    chat_template: str | None = None,
    train_on: TrainOn = "assistant",
) -> tuple[list[TokenizedExample], LabelReport]:
    """Tokenize every canonical SFT example and check the labels; rows with nothing trained are left out of the
    returned list (the report counts them). Raises ``DataError`` from ``check_labels``."""
    if is_preference(loaded.format):
        raise DataError(f"The dataset is a preference dataset ({loaded.format.value}); train it with DPO or ORPO.")
    _check_train_on(train_on)
    _check_max_length(max_length)
    renderer = ChatRenderer(tokenizer, chat_template)
    tokenized = [
        tokenize_example(tokenizer, ex, max_length=max_length, chat_template=renderer, train_on=train_on)
        for ex in loaded.examples
    ]
    report = check_labels(tokenized, tokenizer, renderer, max_length=max_length)
    return [ex for ex in tokenized if ex.num_trained > 0], report


def as_columns(examples: Iterable[TokenizedExample]) -> dict[str, list[list[int]]]:
    """``{"input_ids": [...], "labels": [...]}`` for ``datasets.Dataset.from_dict`` (TRL uses "labels" as given)."""
    input_ids: list[list[int]] = []
    labels: list[list[int]] = []
    for ex in examples:
        input_ids.append(ex.input_ids)
        labels.append(ex.labels)
    return {"input_ids": input_ids, "labels": labels}


def render_segments(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    chat_template: str | ChatRenderer | None = None,
    max_length: int | None = None,
    train_on: TrainOn = "assistant",
    train_from: int = 0,
) -> list[Segment]:
    """The conversation as the model sees it, split into trained / untrained pieces; text past ``max_length``
    tokens comes last with ``truncated=True``. Only assistant turns at index >= ``train_from`` are marked."""
    _check_train_on(train_on)
    renderer = _renderer(tokenizer, chat_template)
    text, spans = _assistant_spans(renderer, messages, train_from)
    if train_on == "all":
        spans = [(0, len(text))]
    ids, flags, offsets = _label_tokens(tokenizer, text, spans)
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


def _example_text(renderer: ChatRenderer, example: Mapping[str, Any], eos: str) -> str:
    if "messages" in example:
        return renderer.render_for_counting(example["messages"])
    if "text" in example:
        text = str(example["text"])
        return text if not eos or text.endswith(eos) else text + eos
    if "prompt" in example and "chosen" in example:  # preference: the prompt with the chosen answer
        return renderer.render_for_counting([*example["prompt"], *example["chosen"]])
    raise DataError("an example must hold 'messages', 'text' or 'prompt'/'chosen'/'rejected'.")


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
    renderer = _renderer(tokenizer, chat_template)
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
    renderer = _renderer(tokenizer, chat_template)
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
    )


def chunk_text(tokenizer: Any, text: str, *, max_length: int, overlap: int = 0) -> list[str]:
    """Split plain text into pieces of at most ``max_length`` tokens, consecutive pieces sharing ``overlap`` tokens.

    Cuts fall on token boundaries (character offsets of the fast tokenizer). Leave room for BOS/EOS in
    ``max_length`` if the pieces will be trained with them.
    """
    _check_max_length(max_length)
    if not isinstance(overlap, int) or overlap < 0 or overlap >= max_length:
        raise ConfigError(f"overlap must be between 0 and max_length - 1 ({max_length - 1}), not {overlap!r}.")
    if not text:
        return []
    ids, offsets = _encode_with_offsets(tokenizer, text)
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
