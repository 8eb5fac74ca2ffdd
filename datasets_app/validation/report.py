"""``validate_files``: one streaming pass that builds the validation report (columns, duplicates, PII, text quality,
token lengths with the base model's tokenizer, statistics, row errors with line numbers, verdict)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from training.engine.data import DEFAULT_MAX_BYTES, ChatRenderer, is_preference, token_lengths
from training.engine.errors import DataError

from .parallel import PARALLEL_MIN_BYTES, SplitCounter, can_fork
from .pii import DESCRIPTIONS, KINDS, scan
from .rows import Issue, ProgressEstimator, Row, RowStream
from .stats import StatsAccumulator, parts_of, percentile
from .text import has_control_chars, has_mojibake, normalized_key
from .tokenizer_cache import get_tokenizer, tokenizer_name

logger = logging.getLogger(__name__)

SHORT_RESPONSE_CHARS = 5
"""A trained answer (assistant turns / text / chosen) shorter than this, once stripped, is "very short"."""
LONG_ROW_CHARS = 20_000
"""A row whose text is longer than this many characters is "very long"."""
MAX_LISTED_ERRORS = 100
MAX_EXAMPLE_LINES = 20
MAX_COLUMNS = 200
QUALITY_KINDS = ("empty", "very_short", "very_long", "control_chars", "broken_encoding", "no_assistant_turn")
_QUALITY_MESSAGES = {
    "empty": "have an empty answer",
    "very_short": f"have a very short answer (under {SHORT_RESPONSE_CHARS} characters)",
    "very_long": f"are very long (over {LONG_ROW_CHARS:,} characters)",
    "control_chars": "contain control characters",
    "broken_encoding": "show broken encoding (mojibake such as 'Ã©' or the replacement character)",
}


class Refs:
    """A count plus the first few (file, line) places where something was seen."""

    __slots__ = ("count", "places")

    def __init__(self) -> None:
        self.count = 0
        self.places: list[tuple[str, int]] = []

    def add(self, file: str, line: int) -> None:
        self.count += 1
        if len(self.places) < MAX_EXAMPLE_LINES:
            self.places.append((file, line))

    def to_dict(self, multi_file: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "lines": [line for _, line in self.places]}
        if multi_file:
            out["files"] = [f for f, _ in self.places]
        return out


def _rows_word(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


def _verb(n: int, plural: str) -> str:
    """'have'/'are'/'contain'/'show' for several rows, singular for one."""
    if n != 1:
        return plural
    first, _, rest = plural.partition(" ")
    singular = {"have": "has", "are": "is", "contain": "contains", "show": "shows"}.get(first, first)
    return f"{singular} {rest}".strip()


def _histogram(lengths: Sequence[int]) -> list[dict[str, int]]:
    if not lengths:
        return []
    top = max(lengths)
    width = 8
    while (top // width) + 1 > 20:
        width *= 2
    counts = Counter(n // width for n in lengths)
    return [{"start": i * width, "end": (i + 1) * width, "count": counts.get(i, 0)} for i in range(top // width + 1)]


class _Validation:
    """State of one validation pass; ``examples()`` feeds token counting while every row is checked."""

    def __init__(self, stream: RowStream, progress: ProgressEstimator) -> None:
        self.stream = stream
        self.progress = progress
        self.rows = 0
        self.rows_valid = 0
        self.records = 0
        self.columns: dict[str, list[int]] = {}
        self.errors: list[dict[str, Any]] = []
        self.row_errors = 0
        self.exact = Refs()
        self.normalized = Refs()
        self.exact_pairs: list[tuple[tuple[str, int], tuple[str, int]]] = []
        self.normalized_pairs: list[tuple[tuple[str, int], tuple[str, int]]] = []
        self.pii = {kind: Refs() for kind in KINDS}
        self.quality = {kind: Refs() for kind in QUALITY_KINDS}
        self.stats = StatsAccumulator()
        self.valid_files = array("H")
        self.valid_lines = array("q")
        self.file_names: list[str] = []

    def _record_error(self, row: Row) -> None:
        self.row_errors += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"file": row.file, "line": row.line, "message": row.error})
        record = row.record
        if record is not None and all(
            v is None or (isinstance(v, str) and (not v or v.isspace())) or v == [] for v in record.values()
        ):
            self.quality["empty"].add(row.file, row.line)
        if row.error and "no assistant turn" in row.error:
            self.quality["no_assistant_turn"].add(row.file, row.line)

    def examples(self) -> Iterator[Mapping[str, Any]]:
        """Check every row; yield the canonical examples (in order) for token counting."""
        columns = self.columns
        exact_seen: dict[int, int] = {}  # content hash -> index of its first valid row
        norm_seen: dict[int, int] = {}
        valid_files, valid_lines, file_names = self.valid_files, self.valid_lines, self.file_names
        pii = self.pii
        quality = self.quality
        stats = self.stats
        stream = self.stream
        preference: bool | None = None
        file_ids: dict[str, int] = {}
        n = 0
        for row in stream:
            n += 1
            if n % 2000 == 0:
                self.progress.update(stream.file_index, row.line, scale=0.97)
            record = row.record
            if record is not None:
                self.records += 1
                for key, value in record.items():
                    col = columns.get(key)
                    if col is None:
                        if len(columns) >= MAX_COLUMNS:
                            continue
                        col = columns[key] = [0, 0]
                    col[0] += 1
                    if value is None or value == "" or (type(value) is str and value.isspace()) or value == []:
                        col[1] += 1
                if preference is None and stream.format is not None:
                    preference = is_preference(stream.format)
                if preference:
                    stats.add_record(record)
            example = row.example
            if example is None:
                if row.error is not None:
                    self._record_error(row)
                continue
            file, line = row.file, row.line
            parts = parts_of(example)
            texts = parts.texts
            text = texts[0] if len(texts) == 1 else "\n".join(texts)
            stats.add(parts, len(text) - len(texts) + 1 if texts else 0)
            data = text.encode()
            lower = data.lower() if len(data) == len(text) else text.lower().encode()
            # duplicates: exact content first; rows that are not exact copies are compared after normalisation
            roles = parts.roles
            index = len(valid_lines)
            key = hash((roles, tuple(texts)))
            first = exact_seen.get(key)
            if first is not None:
                self.exact.add(file, line)
                if len(self.exact_pairs) < MAX_EXAMPLE_LINES:
                    self.exact_pairs.append(((file_names[valid_files[first]], valid_lines[first]), (file, line)))
            else:
                exact_seen[key] = index
                nkey = hash((roles, normalized_key(text, lower)))
                first = norm_seen.get(nkey)
                if first is not None:
                    self.normalized.add(file, line)
                    if len(self.normalized_pairs) < MAX_EXAMPLE_LINES:
                        self.normalized_pairs.append(
                            ((file_names[valid_files[first]], valid_lines[first]), (file, line))
                        )
                else:
                    norm_seen[nkey] = index
            # PII
            found = scan(data, lower if len(lower) == len(data) else None)
            if found:
                for kind in {k for k, _, _ in found}:
                    pii[kind].add(file, line)
            # text quality
            response = parts.response
            if sum(map(len, response)) <= 64:
                stripped = sum(len(r.strip()) for r in response)
                if stripped == 0:
                    quality["empty"].add(file, line)
                elif stripped < SHORT_RESPONSE_CHARS:
                    quality["very_short"].add(file, line)
            if len(text) > LONG_ROW_CHARS:
                quality["very_long"].add(file, line)
            if has_control_chars(text, data):
                quality["control_chars"].add(file, line)
            if has_mojibake(text, data):
                quality["broken_encoding"].add(file, line)
            fid = file_ids.get(file)
            if fid is None:
                fid = file_ids[file] = len(file_names)
                file_names.append(file)
            valid_files.append(fid)
            valid_lines.append(line)
            yield example
        self.rows = n
        self.rows_valid = len(self.valid_lines)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during the pass: it would walk the growing hash tables and the tokenizer
    again and again (about 7% of the time) while every object of a row is freed by reference counting anyway."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _pair_lists(pairs: list[tuple[tuple[str, int], tuple[str, int]]], multi_file: bool) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {"lines": [[a[1], b[1]] for a, b in pairs]}
    if multi_file:
        out["files"] = [[a[0], b[0]] for a, b in pairs]
    return out


def _warning(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "count": 0, "lines": []}


def _use_helper_process(paths: Sequence[str], parallel: bool | None) -> bool:
    """Count tokens on a second core? Auto: for inputs of 16 MiB or more, when a core looks idle (load average)."""
    if parallel is not None:
        return parallel and can_fork()
    if not can_fork() or sum(os.path.getsize(p) for p in paths if os.path.isfile(p)) < PARALLEL_MIN_BYTES:
        return False
    try:
        return os.getloadavg()[0] + 1.0 <= (os.cpu_count() or 1)
    except OSError:  # pragma: no cover
        return False


def _measure(
    state: _Validation,
    tokenizer: Any,
    renderer: ChatRenderer | None,
    paths: Sequence[str],
    parallel: bool | None,
    warnings: list[dict[str, Any]],
) -> list[int] | None:
    """Run the pass: check every row and count the tokens of the valid ones (None when they could not be counted)."""
    examples = state.examples()
    lengths: list[int] | None = None
    if renderer is not None:
        splitter = None
        if _use_helper_process(paths, parallel):
            try:
                splitter = SplitCounter(tokenizer, renderer)
            except (AssertionError, OSError, ValueError) as exc:  # e.g. inside a daemonic process
                logger.info("token counting stays in-process: %s", exc)
        try:
            if splitter is not None:
                lengths = splitter.count(examples)
                if lengths is None:
                    warnings.append(
                        _warning("tokens_unavailable", "Token lengths were not measured: the helper process failed.")
                    )
            else:
                lengths = token_lengths(tokenizer, examples, chat_template=renderer, batch_size=2048)
        except DataError as exc:
            logger.warning("token counting failed: %s", exc)
            warnings.append(_warning("tokens_unavailable", f"Token lengths were not measured: {exc}"))
            lengths = None
    for _ in examples:  # finish the checks when token counting was skipped or stopped early
        pass
    return lengths


def validate_files(
    paths: Sequence[str],
    *,
    fmt: str | None = None,
    column_mapping: Mapping[str, str] | None = None,
    tokenizer_path: str | None = None,
    max_length: int = 2048,
    chat_template: str | None = None,
    progress: Callable[[float], None] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    parallel: bool | None = None,
) -> dict[str, Any]:
    """Validate dataset files and return the JSON-safe report (see docs/DATASETS-CONTRACT.md).

    Bad content never raises: it ends up in ``errors``/``warnings`` and the verdict. Token lengths are measured with
    ``tokenizer_path`` (default: the embedded SmolLM2) rendering rows with ``chat_template`` (default: the
    tokenizer's own). Large inputs (16 MiB or more) count tokens on a second core in a forked
    helper process when a core is idle (``parallel`` forces it on or off). Raises ``ConfigError`` only for an
    unknown ``chat_template`` name.
    """
    started = time.perf_counter()
    paths = [str(p) for p in paths]
    stream = RowStream(paths, fmt=fmt, column_mapping=column_mapping, max_bytes=max_bytes)
    estimator = ProgressEstimator(paths, progress)
    state = _Validation(stream, estimator)
    warnings: list[dict[str, Any]] = []
    tokenizer = renderer = None
    try:
        tokenizer = get_tokenizer(tokenizer_path)
    except Exception as exc:  # a base model without a usable tokenizer: report it, validate everything else
        logger.warning("cannot load tokenizer %s: %s", tokenizer_path, exc)
        message = f"Token lengths were not measured: the tokenizer could not be loaded ({exc})."
        warnings.append(_warning("tokenizer_unavailable", message))
    if tokenizer is not None:
        renderer = ChatRenderer(tokenizer, chat_template)
    with _gc_paused():
        lengths = _measure(state, tokenizer, renderer, paths, parallel, warnings)

    multi = len(paths) > 1
    errors = [issue.to_dict() for issue in stream.issues] + state.errors
    errors_total = len(stream.issues) + state.row_errors
    if state.rows_valid == 0 and not errors:
        errors.append(Issue("No rows could be read from the dataset.").to_dict())
        errors_total += 1

    # warnings
    for kind in KINDS:
        refs = state.pii[kind]
        if refs.count:
            warnings.append(
                {
                    "code": f"pii_{kind}",
                    "message": f"{_rows_word(refs.count)} {_verb(refs.count, 'contain')} {DESCRIPTIONS[kind]}",
                    **refs.to_dict(multi),
                }
            )
    if state.exact.count:
        n = state.exact.count
        warnings.append(
            {
                "code": "duplicates_exact",
                "message": f"{_rows_word(n)} {_verb(n, 'are')} exact duplicates of an earlier row",
                **state.exact.to_dict(multi),
            }
        )
    if state.normalized.count:
        n = state.normalized.count
        warnings.append(
            {
                "code": "duplicates_normalized",
                "message": f"{_rows_word(n)} {_verb(n, 'are')} duplicates "
                "of an earlier row once case, whitespace and punctuation are ignored",
                **state.normalized.to_dict(multi),
            }
        )
    for kind, text in _QUALITY_MESSAGES.items():
        refs = state.quality[kind]
        if refs.count:
            warnings.append(
                {
                    "code": f"quality_{kind}",
                    "message": f"{_rows_word(refs.count)} {_verb(refs.count, text)}",
                    **refs.to_dict(multi),
                }
            )

    tokens: dict[str, Any] | None = None
    if lengths is not None:
        if len(lengths) != state.rows_valid:  # pragma: no cover - token_lengths returns one count per example
            raise RuntimeError(f"token_lengths returned {len(lengths)} counts for {state.rows_valid} rows")
        ordered = sorted(lengths)
        over = Refs()
        for i, n in enumerate(lengths):
            if n > max_length:
                over.add(state.file_names[state.valid_files[i]], state.valid_lines[i])
        over_dict = over.to_dict(multi)
        tokens = {
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
        if over.count:
            warnings.append(
                {
                    "code": "tokens_over_max_length",
                    "message": f"{_rows_word(over.count)} "
                    f"{_verb(over.count, 'are')} longer than max_length={max_length} tokens and will be "
                    "truncated",
                    **over_dict,
                }
            )

    fmt_name = stream.format.value if stream.format is not None else None
    quality: dict[str, Any] = {kind: state.quality[kind].count for kind in QUALITY_KINDS}
    quality["lines"] = {kind: [line for _, line in state.quality[kind].places] for kind in QUALITY_KINDS}
    if multi:
        quality["files"] = {kind: [f for f, _ in state.quality[kind].places] for kind in QUALITY_KINDS}
    duplicates: dict[str, Any] = {
        "exact": state.exact.count,
        "normalized": state.normalized.count,
        "examples": _pair_lists(state.exact_pairs, multi)["lines"],
        "normalized_examples": _pair_lists(state.normalized_pairs, multi)["lines"],
    }
    if multi:
        duplicates["example_files"] = _pair_lists(state.exact_pairs, multi)["files"]
        duplicates["normalized_example_files"] = _pair_lists(state.normalized_pairs, multi)["files"]
    verdict = "invalid" if errors_total or state.rows_valid == 0 else "warnings" if warnings else "ok"
    if progress is not None:
        progress(1.0)
    return {
        "verdict": verdict,
        "format": fmt_name,
        "format_detected": stream.format_detected,
        "column_mapping": dict(column_mapping) if column_mapping else None,
        "rows": state.rows,
        "rows_valid": state.rows_valid,
        "files": stream.files,
        "columns": {
            key: {"missing": state.records - present, "empty": empty}
            for key, (present, empty) in state.columns.items()
        },
        "errors": errors,
        "errors_total": errors_total,
        "warnings": warnings,
        "duplicates": duplicates,
        "pii": {kind: state.pii[kind].to_dict(multi) for kind in KINDS},
        "quality": quality,
        "tokens": tokens,
        "statistics": state.stats.result(fmt_name),
        "elapsed_s": round(time.perf_counter() - started, 3),
    }
