"""The sections of the validation report built from what the pass found: errors, warnings, token lengths,
duplicates, quality, columns, and the verdict (shape in docs/DATASETS-CONTRACT.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from .checks import LONG_ROW_CHARS, QUALITY_KINDS, SHORT_RESPONSE_CHARS, Place, Refs, RowChecks
from .pii import DESCRIPTIONS, KINDS
from .rows import Issue, RowStream
from .stats import percentile
from .tokenizer_cache import tokenizer_name

_QUALITY_MESSAGES = {
    "empty": "have an empty answer",
    "very_short": f"have a very short answer (under {SHORT_RESPONSE_CHARS} characters)",
    "very_long": f"are very long (over {LONG_ROW_CHARS:,} characters)",
    "control_chars": "contain control characters",
    "broken_encoding": "show broken encoding (mojibake such as 'Ã©' or the replacement character)",
}


def _rows_word(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


def _verb(n: int, plural: str) -> str:
    """'have'/'are'/'contain'/'show' for several rows, singular for one."""
    if n != 1:
        return plural
    first, _, rest = plural.partition(" ")
    singular = {"have": "has", "are": "is", "contain": "contains", "show": "shows"}.get(first, first)
    return f"{singular} {rest}".strip()


def warning(code: str, message: str) -> dict[str, Any]:
    """A warning that points at no rows."""
    return {"code": code, "message": message, "count": 0, "lines": []}


def _row_warning(code: str, refs: Refs, plural: str, multi: bool) -> dict[str, Any]:
    """A warning about ``refs.count`` rows that ``plural`` (e.g. "are exact duplicates of an earlier row")."""
    return {"code": code, "message": f"{_rows_word(refs.count)} {_verb(refs.count, plural)}", **refs.to_dict(multi)}


def errors_section(stream: RowStream, checks: RowChecks) -> tuple[list[dict[str, Any]], int]:
    """The listed errors (input issues first, then row errors) and how many there are in all."""
    errors = [issue.to_dict() for issue in stream.issues] + checks.errors
    errors_total = len(stream.issues) + checks.row_errors
    if checks.rows_valid == 0 and not errors:
        errors.append(Issue("No rows could be read from the dataset.").to_dict())
        errors_total += 1
    return errors, errors_total


def content_warnings(checks: RowChecks, multi: bool) -> list[dict[str, Any]]:
    """Warnings about the rows' content: PII, duplicates, text quality (in that order)."""
    warnings = [
        _row_warning(f"pii_{kind}", checks.pii[kind], f"contain {DESCRIPTIONS[kind]}", multi)
        for kind in KINDS
        if checks.pii[kind].count
    ]
    if checks.exact.count:
        warnings.append(
            _row_warning("duplicates_exact", checks.exact, "are exact duplicates of an earlier row", multi)
        )
    if checks.normalized.count:
        plural = "are duplicates of an earlier row once case, whitespace and punctuation are ignored"
        warnings.append(_row_warning("duplicates_normalized", checks.normalized, plural, multi))
    warnings += [
        _row_warning(f"quality_{kind}", checks.quality[kind], text, multi)
        for kind, text in _QUALITY_MESSAGES.items()
        if checks.quality[kind].count
    ]
    if checks.tool_unknown.count:
        plural = "have a call to a tool that is not in the row's tools list"
        warnings.append(_row_warning("tool_unknown", checks.tool_unknown, plural, multi))
    return warnings


def tool_calling_section(checks: RowChecks) -> dict[str, int] | None:
    """How many valid rows call tools or hold tool results, with the calls and results counted (None: no such row)."""
    if not checks.tool_rows:
        return None
    return {"rows": checks.tool_rows, "calls": checks.tool_calls, "results": checks.tool_results}


def _histogram(lengths: Sequence[int]) -> list[dict[str, int]]:
    if not lengths:
        return []
    top = max(lengths)
    width = 8
    while (top // width) + 1 > 20:
        width *= 2
    counts = Counter(n // width for n in lengths)
    return [{"start": i * width, "end": (i + 1) * width, "count": counts.get(i, 0)} for i in range(top // width + 1)]


def tokens_section(
    lengths: list[int],
    checks: RowChecks,
    *,
    multi: bool,
    tokenizer_path: str | None,
    chat_template: str | None,
    max_length: int,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Token length figures of the valid rows, and the warning about rows over ``max_length`` (None when none)."""
    if len(lengths) != checks.rows_valid:  # pragma: no cover - token_lengths returns one count per example
        raise RuntimeError(f"token_lengths returned {len(lengths)} counts for {checks.rows_valid} rows")
    ordered = sorted(lengths)
    over = Refs()
    for i, n in enumerate(lengths):
        if n > max_length:
            over.add(*checks.place(i))
    over_dict = over.to_dict(multi)
    tokens: dict[str, Any] = {
        "tokenizer": tokenizer_name(tokenizer_path),
        "chat_template": chat_template or "auto",
        "max_length": max_length,
        "total": sum(lengths),
        "mean": round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
        "percentiles": {
            "p50": percentile(ordered, 0.5),
            "p90": percentile(ordered, 0.9),
            "p95": percentile(ordered, 0.95),
            "p99": percentile(ordered, 0.99),
            "max": ordered[-1] if ordered else 0,
        },
        "histogram": _histogram(lengths),
        "over_max_length": over.count,
        "over_max_length_lines": over_dict["lines"],
    }
    if multi:
        tokens["over_max_length_files"] = over_dict["files"]
    if not over.count:
        return tokens, None
    plural = f"are longer than max_length={max_length} tokens and will be truncated"
    return tokens, _row_warning("tokens_over_max_length", over, plural, multi)


def quality_section(checks: RowChecks, multi: bool) -> dict[str, Any]:
    quality: dict[str, Any] = {kind: checks.quality[kind].count for kind in QUALITY_KINDS}
    quality["lines"] = {kind: [line for _, line in checks.quality[kind].places] for kind in QUALITY_KINDS}
    if multi:
        quality["files"] = {kind: [f for f, _ in checks.quality[kind].places] for kind in QUALITY_KINDS}
    return quality


def duplicates_section(checks: RowChecks, multi: bool) -> dict[str, Any]:
    def lines(pairs: list[tuple[Place, Place]]) -> list[list[Any]]:
        return [[a[1], b[1]] for a, b in pairs]

    def files(pairs: list[tuple[Place, Place]]) -> list[list[Any]]:
        return [[a[0], b[0]] for a, b in pairs]

    duplicates: dict[str, Any] = {
        "exact": checks.exact.count,
        "normalized": checks.normalized.count,
        "examples": lines(checks.exact_pairs),
        "normalized_examples": lines(checks.normalized_pairs),
    }
    if multi:
        duplicates["example_files"] = files(checks.exact_pairs)
        duplicates["normalized_example_files"] = files(checks.normalized_pairs)
    return duplicates


def columns_section(checks: RowChecks) -> dict[str, dict[str, int]]:
    """Per column: records without it, records where it is blank."""
    return {
        key: {"missing": checks.records - present, "empty": empty} for key, (present, empty) in checks.columns.items()
    }


def verdict_of(errors_total: int, rows_valid: int, warnings: list[dict[str, Any]]) -> str:
    return "invalid" if errors_total or rows_valid == 0 else "warnings" if warnings else "ok"
