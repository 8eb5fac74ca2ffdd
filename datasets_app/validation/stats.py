"""Dataset statistics over canonical examples: lengths, turns per conversation, role balance, preference pairs, KTO
labels."""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.engine.data import is_preference, is_unpaired_preference
from training.engine.data.tool_formats import tool_calls_text

from .rows import RowStream


@dataclass(slots=True)
class Parts:
    """The text of one canonical example, taken apart once and shared by every check."""

    texts: list[str]  # every content string (system, user, assistant / text / prompt, chosen, rejected)
    roles: tuple[str, ...]  # roles of the conversation (prompt + chosen for preference rows); empty for text rows
    response: list[str]  # what is trained: assistant contents / the text / the chosen answer
    preference: tuple[int, int, int] | None = None  # (prompt chars, chosen chars, rejected chars)
    label: bool | None = None  # KTO: whether the answer is desirable


def parts_of(example: Mapping[str, Any]) -> Parts:
    """Take a canonical example (messages, text or preference) apart."""
    messages = example.get("messages")
    if messages is not None:
        if "tools" in example or any(len(m) > 2 for m in messages):  # tool calls are part of what is trained
            texts = [m["content"] + tool_calls_text(m) if m.get("tool_calls") else m["content"] for m in messages]
        else:
            texts = [m["content"] for m in messages]
        roles = tuple([m["role"] for m in messages])
        if len(roles) == 2 and roles[1] == "assistant":  # the common single-turn case
            return Parts(texts, roles, texts[1:])
        return Parts(texts, roles, [t for t, r in zip(texts, roles, strict=True) if r == "assistant"])
    if "text" in example:
        text = example["text"]
        return Parts([text], (), [text])
    if "completion" in example:  # KTO: the prompt and one labelled answer
        p = [m["content"] for m in example["prompt"]]
        c = [m["content"] for m in example["completion"]]
        roles = tuple([m["role"] for m in example["prompt"]] + [m["role"] for m in example["completion"]])
        return Parts(p + c, roles, c, label=bool(example["label"]))
    prompt, chosen, rejected = example["prompt"], example["chosen"], example["rejected"]
    p = [m["content"] for m in prompt]
    c = [m["content"] for m in chosen]
    r = [m["content"] for m in rejected]
    return Parts(
        p + c + r,
        tuple([m["role"] for m in prompt] + [m["role"] for m in chosen]),
        c,
        (sum(map(len, p)), sum(map(len, c)), sum(map(len, r))),
    )


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (``q`` in 0..1) of already sorted values; 0 for no values."""
    if not sorted_values:
        return 0
    return int(sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)])


class StatsAccumulator:
    """Collects statistics row by row in the validation pass (or on its own in ``statistics``)."""

    def __init__(self) -> None:
        self.chars = array("q")
        self.signatures: dict[tuple[str, ...], int] = {}  # role sequence -> rows (turns and roles derive from it)
        self.pref = [0, 0, 0]
        self.pref_rows = 0
        self.identical_pairs = 0
        self.labels = [0, 0]  # KTO: undesirable, desirable rows

    def add(self, parts: Parts, chars: int | None = None) -> None:
        """Count one valid example (``chars``: its total characters when the caller already knows them)."""
        self.chars.append(sum(map(len, parts.texts)) if chars is None else chars)
        roles = parts.roles
        if roles:
            signatures = self.signatures
            signatures[roles] = signatures.get(roles, 0) + 1
        if parts.label is not None:
            self.labels[parts.label] += 1
        if parts.preference is not None:
            self.pref_rows += 1
            for i, n in enumerate(parts.preference):
                self.pref[i] += n

    def add_record(self, record: Mapping[str, Any]) -> None:
        """Look at a raw (mapped) preference record: identical chosen/rejected pairs fail conversion, count them."""
        if "chosen" in record and "rejected" in record and record["chosen"] == record["rejected"]:
            self.identical_pairs += 1

    def result(self, fmt: str | None) -> dict[str, Any]:
        """The statistics dict of the contract."""
        turns: Counter[int] = Counter()
        roles: Counter[str] = Counter()
        for signature, rows in self.signatures.items():
            turns[len(signature) - signature.count("system")] += rows
            for role in signature:
                roles[role] += rows
        chars = sorted(self.chars)
        n = len(chars)
        turn_rows = sum(turns.values())
        preference = None
        if fmt is not None and is_preference(fmt):
            rows = self.pref_rows or 1
            preference = {
                "prompt_chars_mean": round(self.pref[0] / rows, 1),
                "chosen_chars_mean": round(self.pref[1] / rows, 1),
                "rejected_chars_mean": round(self.pref[2] / rows, 1),
                "identical_pairs": self.identical_pairs,
            }
        return {
            "rows": n,
            "format": fmt,
            "chars": {
                "mean": round(sum(chars) / n, 1) if n else 0.0,
                "p50": percentile(chars, 0.5),
                "p95": percentile(chars, 0.95),
                "max": chars[-1] if chars else 0,
            },
            "turns": {
                "mean": round(sum(k * v for k, v in turns.items()) / turn_rows, 2) if turn_rows else 0.0,
                "max": max(turns) if turns else 0,
                "histogram": [{"turns": k, "count": turns[k]} for k in sorted(turns)],
            },
            "roles": {
                role: roles.get(role, 0)
                for role in ("system", "user", "assistant", *(("tool",) if roles.get("tool") else ()))
            },
            "preference": preference,
            "labels": self._labels() if fmt is not None and is_unpaired_preference(fmt) else None,
        }

    def _labels(self) -> dict[str, Any]:
        """KTO: desirable and undesirable rows and the desirable share (the balance the trainer weights)."""
        undesirable, desirable = self.labels
        total = desirable + undesirable
        return {
            "desirable": desirable,
            "undesirable": undesirable,
            "desirable_share": round(desirable / total, 4) if total else 0.0,
        }


def statistics(
    paths: Sequence[str], *, fmt: str | None = None, column_mapping: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Statistics of the rows that convert: characters per row, turns per conversation, messages per role and,
    for preference data, mean prompt/chosen/rejected lengths and identical pairs."""
    stream = RowStream(list(paths), fmt=fmt, column_mapping=column_mapping)
    acc = StatsAccumulator()
    preference = None
    for row in stream:
        if preference is None and stream.format is not None:
            preference = is_preference(stream.format)
        if preference and row.record is not None:
            acc.add_record(row.record)
        if row.example is not None:
            acc.add(parts_of(row.example))
    return acc.result(stream.format.value if stream.format else None)
