"""Preprocessing steps: each takes canonical examples and yields canonical examples (cleaning, deduplication, PII
redaction, templates, chunking, length filters, keeping the desirable rows of KTO data). ``preprocess`` runs them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from training.engine.data import ChatRenderer, chunk_text, token_lengths
from training.engine.errors import ConfigError

from .pii import redact
from .stats import parts_of
from .text import normalize_unicode, normalized_key, strip_whitespace

Example = dict[str, Any]
Rows = Iterator[Example]

TEMPLATES = ("alpaca", "chatml", "llama2", "completion")
STEP_OPTIONS: dict[str, frozenset[str]] = {
    "normalize_unicode": frozenset(),
    "strip_whitespace": frozenset(),
    "dedupe": frozenset({"mode"}),
    "redact_pii": frozenset(),
    "apply_template": frozenset({"template"}),
    "chunk": frozenset({"max_tokens", "overlap"}),
    "filter_length": frozenset({"min_chars", "max_tokens"}),
    "keep_desirable": frozenset(),
}
OPS: tuple[str, ...] = tuple(STEP_OPTIONS)
_TOKEN_BATCH = 2048


class StepError(ValueError):
    """A preprocessing step is unknown, has bad options, or does not fit the data (the message names the step)."""


def kind_of(example: Mapping[str, Any]) -> str:
    """The canonical shape of an example: "messages", "text", "preference" or "kto"."""
    if "messages" in example:
        return "messages"
    if "text" in example:
        return "text"
    if "completion" in example:
        return "kto"
    return "preference"


def map_contents(example: Example, fn: Callable[[str], str]) -> tuple[Example, bool]:
    """Apply ``fn`` to every content string of a canonical example; return the new example and whether it changed."""
    changed = False

    def messages(items: list[dict[str, str]]) -> list[dict[str, str]]:
        nonlocal changed
        out = []
        for m in items:
            new = fn(m["content"])
            changed = changed or new != m["content"]
            out.append({**m, "content": new})
        return out

    if "messages" in example:
        result: Example = {**example, "messages": messages(example["messages"])}
    elif "text" in example:
        text = fn(example["text"])
        changed = text != example["text"]
        result = {**example, "text": text}
    elif "completion" in example:
        result = {**example, "prompt": messages(example["prompt"]), "completion": messages(example["completion"])}
    else:
        result = {
            **example,
            "prompt": messages(example["prompt"]),
            "chosen": messages(example["chosen"]),
            "rejected": messages(example["rejected"]),
        }
    return result, changed


class Step:
    """One preprocessing operation; ``counts`` is reported back per step."""

    op = ""

    def __init__(self, index: int, params: Mapping[str, Any]) -> None:
        self.index = index
        self.params = params
        self.counts: dict[str, int] = {}
        self.tokenizer: Any = None

    def fail(self, message: str) -> StepError:
        return StepError(f"Step {self.index} ({self.op}): {message}")

    def output_kind(self, kind: str) -> str:
        """The canonical shape after this step, given the shape before it (raises ``StepError`` if it cannot)."""
        return kind

    @property
    def needs_tokenizer(self) -> bool:
        return False

    def apply(self, rows: Rows) -> Rows:  # pragma: no cover - abstract
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        return {"op": self.op, **{k: v for k, v in self.params.items() if k != "op"}, **self.counts}


class _MapStep(Step):
    fn: Callable[[str], str]

    def apply(self, rows: Rows) -> Rows:
        changed = 0
        fn = type(self).fn
        try:
            for example in rows:
                new, did = map_contents(example, fn)
                changed += did
                yield new
        finally:
            self.counts["changed"] = changed


class NormalizeUnicode(_MapStep):
    op = "normalize_unicode"
    fn = staticmethod(normalize_unicode)


class StripWhitespace(_MapStep):
    op = "strip_whitespace"
    fn = staticmethod(strip_whitespace)


class Dedupe(Step):
    op = "dedupe"

    def __init__(self, index: int, params: Mapping[str, Any]) -> None:
        super().__init__(index, params)
        self.mode = params.get("mode", "exact")
        if self.mode not in ("exact", "normalized"):
            raise self.fail(f"mode must be 'exact' or 'normalized', not {self.mode!r}.")

    def apply(self, rows: Rows) -> Rows:
        seen: set[int] = set()
        removed = 0
        try:
            for example in rows:
                parts = parts_of(example)
                roles = parts.roles
                if self.mode == "exact":  # a KTO answer labelled both ways is two rows, not a duplicate
                    key = hash((roles, parts.label, tuple(parts.texts)))
                else:
                    key = hash((roles, parts.label, normalized_key("\n".join(parts.texts))))
                if key in seen:
                    removed += 1
                    continue
                seen.add(key)
                yield example
        finally:
            self.counts["removed"] = removed


class RedactPii(Step):
    op = "redact_pii"

    def apply(self, rows: Rows) -> Rows:
        totals: dict[str, int] = {}

        def fn(text: str) -> str:
            new, counts = redact(text)
            for kind, n in counts.items():
                totals[kind] = totals.get(kind, 0) + n
            return new

        changed = 0
        try:
            for example in rows:
                new, did = map_contents(example, fn)
                changed += did
                yield new
        finally:
            self.counts["changed"] = changed
            for kind in ("email", "phone", "credit_card", "ip_address", "secret"):
                self.counts[kind] = totals.get(kind, 0)


class ApplyTemplate(Step):
    op = "apply_template"

    def __init__(self, index: int, params: Mapping[str, Any]) -> None:
        super().__init__(index, params)
        self.template = params.get("template", "chatml")
        if self.template not in TEMPLATES:
            raise self.fail(f"template must be one of {', '.join(TEMPLATES)}, not {self.template!r}.")

    @property
    def needs_tokenizer(self) -> bool:
        return True

    def output_kind(self, kind: str) -> str:
        if kind == "preference":
            raise self.fail("preference pairs cannot be turned into plain text; train them with DPO/ORPO as they are.")
        if kind == "kto":
            raise self.fail(
                "labelled KTO rows cannot be turned into plain text; train them with KTO, or put a "
                "keep_desirable step first."
            )
        return "text"

    def apply(self, rows: Rows) -> Rows:
        renderer = ChatRenderer(self.tokenizer, self.template)
        converted = 0
        try:
            for example in rows:
                if "messages" in example:
                    converted += 1
                    # The trailing newline after the last end-of-turn marker would only push EOS one token later.
                    yield {"text": renderer.render(example["messages"]).rstrip("\n")}
                else:
                    yield example
        finally:
            self.counts["converted"] = converted


class Chunk(Step):
    op = "chunk"

    def __init__(self, index: int, params: Mapping[str, Any]) -> None:
        super().__init__(index, params)
        self.max_tokens = params.get("max_tokens", 512)
        self.overlap = params.get("overlap", 0)
        if type(self.max_tokens) is not int or self.max_tokens < 1:
            raise self.fail(f"max_tokens must be a positive integer, not {self.max_tokens!r}.")
        if type(self.overlap) is not int or not 0 <= self.overlap < self.max_tokens:
            raise self.fail(f"overlap must be an integer from 0 to max_tokens - 1, not {self.overlap!r}.")

    @property
    def needs_tokenizer(self) -> bool:
        return True

    def output_kind(self, kind: str) -> str:
        if kind != "text":
            raise self.fail(
                f"chunking works on plain text only, but the rows are {kind}; "
                "put an apply_template step before it to turn conversations into text."
            )
        return kind

    def apply(self, rows: Rows) -> Rows:
        split_rows = chunks = 0
        try:
            for example in rows:
                pieces = chunk_text(self.tokenizer, example["text"], max_length=self.max_tokens, overlap=self.overlap)
                if len(pieces) > 1:
                    split_rows += 1
                for piece in pieces:
                    chunks += 1
                    yield {"text": piece}
        except ConfigError as exc:  # pragma: no cover - options are checked up front
            raise self.fail(str(exc)) from None
        finally:
            self.counts["split_rows"] = split_rows
            self.counts["chunks"] = chunks


class FilterLength(Step):
    op = "filter_length"

    def __init__(self, index: int, params: Mapping[str, Any]) -> None:
        super().__init__(index, params)
        self.min_chars = params.get("min_chars", 0)
        self.max_tokens = params.get("max_tokens")
        if type(self.min_chars) is not int or self.min_chars < 0:
            raise self.fail(f"min_chars must be a non-negative integer, not {self.min_chars!r}.")
        if self.max_tokens is not None and (type(self.max_tokens) is not int or self.max_tokens < 1):
            raise self.fail(f"max_tokens must be a positive integer, not {self.max_tokens!r}.")
        if not self.min_chars and self.max_tokens is None:
            raise self.fail("give min_chars and/or max_tokens.")

    @property
    def needs_tokenizer(self) -> bool:
        return self.max_tokens is not None

    def _keep_chars(self, example: Example) -> bool:
        return sum(map(len, parts_of(example).texts)) >= self.min_chars

    def apply(self, rows: Rows) -> Rows:
        too_short = too_long = 0
        renderer = ChatRenderer(self.tokenizer) if self.max_tokens is not None else None
        batch: list[Example] = []

        def flush() -> Iterator[Example]:
            nonlocal too_long
            lengths = token_lengths(self.tokenizer, batch, chat_template=renderer)
            for example, n in zip(batch, lengths, strict=True):
                if n > self.max_tokens:
                    too_long += 1
                else:
                    yield example
            batch.clear()

        try:
            for example in rows:
                if self.min_chars and not self._keep_chars(example):
                    too_short += 1
                    continue
                if renderer is None:
                    yield example
                    continue
                batch.append(example)
                if len(batch) >= _TOKEN_BATCH:
                    yield from flush()
            if batch:
                yield from flush()
        finally:
            self.counts["removed"] = too_short + too_long
            self.counts["too_short"] = too_short
            self.counts["too_long"] = too_long


class KeepDesirable(Step):
    """KTO data to SFT data: the rows labelled desirable become conversations (prompt + answer); the rest go."""

    op = "keep_desirable"

    def output_kind(self, kind: str) -> str:
        if kind != "kto":
            raise self.fail(
                f"keeping desirable rows needs KTO data (rows with a boolean 'label'), but the rows are {kind}."
            )
        return "messages"

    def apply(self, rows: Rows) -> Rows:
        kept = removed = 0
        try:
            for example in rows:
                if example.get("label") is True:
                    kept += 1
                    yield {"messages": [*example["prompt"], *example["completion"]]}
                else:
                    removed += 1
        finally:
            self.counts["kept"] = kept
            self.counts["removed"] = removed


_STEPS: dict[str, type[Step]] = {
    "normalize_unicode": NormalizeUnicode,
    "strip_whitespace": StripWhitespace,
    "dedupe": Dedupe,
    "redact_pii": RedactPii,
    "apply_template": ApplyTemplate,
    "chunk": Chunk,
    "filter_length": FilterLength,
    "keep_desirable": KeepDesirable,
}


def parse_steps(steps: Sequence[Mapping[str, Any]]) -> list[Step]:
    """Check the step list (ops and options) and build the steps; raises ``StepError`` naming the bad step."""
    if not isinstance(steps, (list, tuple)):
        raise StepError('steps must be a list of {"op": ...} objects.')
    out: list[Step] = []
    for i, spec in enumerate(steps, 1):
        if not isinstance(spec, Mapping):
            raise StepError(f"Step {i}: must be an object with an 'op', not {type(spec).__name__}.")
        op = spec.get("op")
        if op not in _STEPS:
            raise StepError(f"Step {i}: unknown op {op!r}; valid ops: {', '.join(OPS)}.")
        extra = set(spec) - {"op"} - STEP_OPTIONS[op]
        if extra:
            raise StepError(
                f"Step {i} ({op}): unknown option(s) {', '.join(sorted(extra))}; "
                f"valid: {', '.join(sorted(STEP_OPTIONS[op])) or 'none'}."
            )
        out.append(_STEPS[op](i, spec))
    return out
