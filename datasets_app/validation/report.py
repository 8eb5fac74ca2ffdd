"""``validate_files``: one streaming pass that builds the validation report (columns, duplicates, PII, text quality,
token lengths with the base model's tokenizer, statistics, row errors with line numbers, verdict).

The steps: read the files (``RowStream``: sniffing, format detection, conversion), load the tokenizer, check every row
while counting its tokens (``RowChecks`` in ``checks``; tokens in-process or on a helper process), then assemble the
report's sections (``findings``) and the verdict."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from training.engine.data import ChatRenderer, token_lengths, wants_packing
from training.engine.errors import DataError

from .checks import RowChecks
from .findings import (
    columns_section,
    content_warnings,
    duplicates_section,
    errors_section,
    quality_section,
    tokens_section,
    tool_calling_section,
    verdict_of,
    warning,
)
from .parallel import PARALLEL_MIN_BYTES, SplitCounter, can_fork
from .pii import KINDS
from .rows import ProgressEstimator, RowStream
from .tokenizer_cache import get_tokenizer

logger = logging.getLogger(__name__)


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


def _load_renderer(
    tokenizer_path: str | None, chat_template: str | None, warnings: list[dict[str, Any]]
) -> tuple[Any, ChatRenderer | None]:
    """The tokenizer and the chat renderer that counts tokens, or (None, None) with a warning when the tokenizer
    cannot be loaded (everything else is still validated). An unknown ``chat_template`` raises ``ConfigError``."""
    try:
        tokenizer = get_tokenizer(tokenizer_path)
    except Exception as exc:  # a base model without a usable tokenizer: report it, validate everything else
        logger.warning("cannot load tokenizer %s: %s", tokenizer_path, exc)
        message = f"Token lengths were not measured: the tokenizer could not be loaded ({exc})."
        warnings.append(warning("tokenizer_unavailable", message))
        return None, None
    return tokenizer, ChatRenderer(tokenizer, chat_template)


def _count_tokens(
    examples: Iterator[Mapping[str, Any]],
    tokenizer: Any,
    renderer: ChatRenderer,
    use_helper: bool,
    warnings: list[dict[str, Any]],
) -> list[int] | None:
    """Token counts of the examples (None with a warning when they could not be counted)."""
    splitter = None
    if use_helper:
        try:
            splitter = SplitCounter(tokenizer, renderer)
        except (AssertionError, OSError, ValueError) as exc:  # e.g. inside a daemonic process
            logger.info("token counting stays in-process: %s", exc)
    try:
        if splitter is None:
            return token_lengths(tokenizer, examples, chat_template=renderer, batch_size=2048)
        lengths = splitter.count(examples)
    except DataError as exc:
        logger.warning("token counting failed: %s", exc)
        warnings.append(warning("tokens_unavailable", f"Token lengths were not measured: {exc}"))
        return None
    if lengths is None:
        warnings.append(warning("tokens_unavailable", "Token lengths were not measured: the helper process failed."))
    return lengths


def _measure(
    checks: RowChecks,
    tokenizer: Any,
    renderer: ChatRenderer | None,
    paths: Sequence[str],
    parallel: bool | None,
    warnings: list[dict[str, Any]],
) -> list[int] | None:
    """Run the pass: check every row and count the tokens of the valid ones (None when they could not be counted)."""
    examples = checks.examples()
    lengths: list[int] | None = None
    if renderer is not None:
        lengths = _count_tokens(examples, tokenizer, renderer, _use_helper_process(paths, parallel), warnings)
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
    max_bytes: int | None = None,
    max_line_bytes: int | None = None,
    parallel: bool | None = None,
) -> dict[str, Any]:
    """Validate dataset files and return the JSON-safe report (see docs/DATASETS-CONTRACT.md).

    Bad content never raises: it ends up in ``errors``/``warnings`` and the verdict. Token lengths are measured with
    ``tokenizer_path`` (default: the embedded SmolLM2) rendering rows with ``chat_template`` (default: the
    tokenizer's own). Large inputs (16 MiB or more) count tokens on a second core in a forked
    helper process when a core is idle (``parallel`` forces it on or off). ``max_bytes`` and ``max_line_bytes``
    bound the reading (default: the current ``read_limits``). Raises ``ConfigError`` only for an unknown
    ``chat_template`` name.
    """
    started = time.perf_counter()
    paths = [str(p) for p in paths]
    stream = RowStream(
        paths, fmt=fmt, column_mapping=column_mapping, max_bytes=max_bytes, max_line_bytes=max_line_bytes
    )
    checks = RowChecks(stream, ProgressEstimator(paths, progress))
    warnings: list[dict[str, Any]] = []
    tokenizer, renderer = _load_renderer(tokenizer_path, chat_template, warnings)
    with _gc_paused():
        lengths = _measure(checks, tokenizer, renderer, paths, parallel, warnings)

    multi = len(paths) > 1
    errors, errors_total = errors_section(stream, checks)
    warnings += content_warnings(checks, multi)
    tokens = None
    if lengths is not None:
        tokens, over_warning = tokens_section(
            lengths,
            checks,
            multi=multi,
            tokenizer_path=tokenizer_path,
            chat_template=chat_template,
            max_length=max_length,
        )
        if wants_packing("auto", stream.format):
            # Raw text trains packed (documents joined with EOS, cut into max_length blocks): nothing is truncated.
            tokens["packing"] = True
            tokens["packed_blocks"] = -(-tokens["total"] // max_length)
        elif over_warning is not None:
            warnings.append(over_warning)
    if progress is not None:
        progress(1.0)
    fmt_name = stream.format.value if stream.format is not None else None
    return {
        "verdict": verdict_of(errors_total, checks.rows_valid, warnings),
        "format": fmt_name,
        "format_detected": stream.format_detected,
        "column_mapping": dict(column_mapping) if column_mapping else None,
        "rows": checks.rows,
        "rows_valid": checks.rows_valid,
        "files": stream.files,
        "columns": columns_section(checks),
        "errors": errors,
        "errors_total": errors_total,
        "warnings": warnings,
        "duplicates": duplicates_section(checks, multi),
        "pii": {kind: checks.pii[kind].to_dict(multi) for kind in KINDS},
        "quality": quality_section(checks, multi),
        "tokens": tokens,
        "statistics": checks.stats.result(fmt_name),
        "tool_calling": tool_calling_section(checks),
        "elapsed_s": round(time.perf_counter() - started, 3),
    }
