"""Fast exact token counting for byte-level BPE tokenizers (GPT-2 style: SmolLM2, Llama 3, Qwen, ...).

Such tokenizers split text on their added tokens, then into pre-tokens with one regex, then encode every pre-token on
its own. So a text's token count is the number of added tokens plus the sum of the counts of its pre-tokens, and
those repeat a lot (Zipf): the count of each distinct pre-token is computed once with the real tokenizer and cached.
Pre-tokenizing with Python's ``re`` (ASCII text) or ``regex`` (the rest) is several times faster than a full encode.
Callers must verify the counter against the real tokenizer on a sample (``token_lengths`` does) because only the
tokenizer layouts recognised here are supported; ``for_tokenizer`` returns None for any other layout.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The same pattern for pure-ASCII text in the stdlib dialect: in ASCII, \s (Unicode White_Space) is exactly these six.
_WS = r"\t\n\x0b\x0c\r "
_GPT2_ASCII = rf"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^{_WS}A-Za-z0-9]+|[{_WS}]+(?![^{_WS}])|[{_WS}]+"""
_MAX_CACHE = 2_000_000


class FastTokenCounter:
    """Counts tokens of many texts exactly (for supported tokenizers) without encoding every text in full."""

    def __init__(self, backend: Any, pattern: str, ascii_pattern: str | None, added: Sequence[str]) -> None:
        import regex

        self._backend = backend
        self._pattern = regex.compile(pattern)
        self._ascii = re.compile(ascii_pattern) if ascii_pattern else None
        ordered = sorted({t for t in added if t}, key=len, reverse=True)
        self._added = re.compile("(" + "|".join(map(re.escape, ordered)) + ")") if ordered else None
        self._cache: dict[str, int] = {}  # pre-token -> its token count
        self._encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> FastTokenCounter | None:
        """A counter for this tokenizer, or None when its layout is not one this counter reproduces exactly."""
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
        if backend is None or not hasattr(backend, "to_str"):
            return None
        try:
            desc = json.loads(backend.to_str())
            added_tokens = backend.get_added_tokens_decoder().values()
        except Exception:  # pragma: no cover - exotic backends
            return None
        if desc.get("normalizer") is not None:
            return None
        for tok in added_tokens:
            if tok.lstrip or tok.rstrip or tok.single_word:
                return None
        pattern, ascii_pattern = _pretokenizer_pattern(desc.get("pre_tokenizer"))
        if pattern is None:
            return None
        return cls(backend, pattern, ascii_pattern, [t.content for t in added_tokens])

    def _words(self, text: str, out: list[str]) -> int:
        """Append the pre-tokens of ``text`` to ``out``; return the number of added tokens in it."""
        pieces = self._added.split(text) if self._added else [text]
        for piece in pieces[0::2]:
            if piece:
                pattern = self._ascii if self._ascii is not None and piece.isascii() else self._pattern
                out.extend(pattern.findall(piece))
        return len(pieces) // 2

    def count(self, texts: Sequence[str]) -> list[int]:
        """Token counts of ``texts`` (as ``encode(text, add_special_tokens=False)`` would give)."""
        words: list[list[str]] = []
        specials: list[int] = []
        for text in texts:
            found: list[str] = []
            specials.append(self._words(text, found))
            words.append(found)
        cache = self._cache
        get = cache.__getitem__
        counts: list[int] = []
        pending: list[int] = []
        for i, (n, found) in enumerate(zip(specials, words, strict=True)):
            try:
                counts.append(n + sum(map(get, found)))
            except KeyError:  # pre-tokens not seen yet: counted below, all in one batch
                counts.append(-1)
                pending.append(i)
        if pending:
            if len(cache) > _MAX_CACHE:
                cache.clear()
            unknown = list(set().union(*(words[i] for i in pending)).difference(cache))
            for word, enc in zip(unknown, self._encode(unknown, add_special_tokens=False), strict=True):
                cache[word] = len(enc.ids)
            for i in pending:
                counts[i] = specials[i] + sum(map(get, words[i]))
        return counts


def _pretokenizer_pattern(pre: Any) -> tuple[str | None, str | None]:
    """(regex pattern, ASCII stdlib pattern or None) for the supported byte-level pre-tokenizer layouts."""
    if not isinstance(pre, dict):
        return None, None
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space") or not pre.get("use_regex", True):
            return None, None
        return _GPT2_PATTERN, _GPT2_ASCII
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers") or []
        if (
            len(steps) == 2
            and steps[0].get("type") == "Split"
            and steps[0].get("behavior") == "Isolated"
            and not steps[0].get("invert")
            and isinstance(steps[0].get("pattern"), dict)
            and "Regex" in steps[0]["pattern"]
            and steps[1].get("type") == "ByteLevel"
            and not steps[1].get("use_regex", True)
            and not steps[1].get("add_prefix_space")
        ):
            return str(steps[0]["pattern"]["Regex"]), None
    return None, None
