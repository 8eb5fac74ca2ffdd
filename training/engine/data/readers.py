"""Streaming readers for dataset files: JSON Lines, JSON arrays, CSV, Parquet, and any of them gzipped.

The real type is sniffed from the content (gzip and Parquet magic bytes, the first non-blank character), so a file
whose suffix is missing or wrong is still read; the suffix only breaks ties (``.tsv`` vs ``.csv``, a ``.jsonl`` whose
first line is broken). Memory stays bounded by the largest single record, never the whole file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from training.engine.errors import DataError

from .fileio import BOM, DEFAULT_MAX_BYTES, PARQUET_MAGIC, OnBadLine, display_name, is_gzip, open_binary, suffixes
from .json_reader import iter_json, iter_jsonl
from .tabular import iter_csv, iter_parquet

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_BYTES", "SUPPORTED_SUFFIXES", "OnBadLine", "display_name", "iter_records", "record_unit"]

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
_SNIFF_BYTES = 1 << 16
_JSON_WS = b" \t\r\n"
_KIND_JSONL = "jsonl"
_KIND_JSON = "json"  # a top-level array, an object holding one list, or concatenated objects
_KIND_CSV = "csv"
_KIND_PARQUET = "parquet"


def _sniff(path: str, name: str, max_bytes: int) -> tuple[str, bool, bytes]:
    """Return (kind, gzipped, first bytes of the decompressed content)."""
    if os.path.isdir(path):
        raise DataError(f"{name} is a directory, not a dataset file.")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise DataError(f"{name} cannot be read: {exc.strerror or exc}.") from exc
    if size == 0:
        raise DataError(f"{name} is empty.")
    gz = is_gzip(path)
    with open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        head = fh.read(_SNIFF_BYTES)
        # Skip leading whitespace in bigger steps so a file padded with blanks is still sniffed correctly.
        while head.lstrip(_JSON_WS) == b"" and head:
            more = fh.read(_SNIFF_BYTES)
            if not more:
                break
            head = more
    if head.startswith(PARQUET_MAGIC):
        return _KIND_PARQUET, gz, head
    if not head.strip():
        raise DataError(f"{name} is empty." if not gz else f"{name} is empty once decompressed.")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{name} is UTF-16 encoded; save it as UTF-8 and upload it again.")
    text_head = head[3:] if head.startswith(BOM) else head
    stripped = text_head.lstrip(_JSON_WS)
    inner, _ = suffixes(name)
    if b"\x00" in text_head[:8192]:
        raise DataError(
            f"{name} does not look like a dataset file: it contains binary data. "
            "Supported: JSON Lines (.jsonl), JSON (.json), CSV (.csv/.tsv), Parquet (.parquet), optionally gzipped."
        )
    first = stripped[:1]
    if first == b"[":
        kind = _KIND_JSON
    elif first == b"{":
        kind = _KIND_JSONL if inner in (".jsonl", ".ndjson") or _looks_like_json_lines(stripped) else _KIND_JSON
    elif inner in (".jsonl", ".ndjson", ".json"):
        kind = _KIND_JSONL  # parsing line 1 will report the exact problem
    elif inner in (".csv", ".tsv") or any(d in stripped.split(b"\n", 1)[0] for d in (b",", b"\t", b";", b"|")):
        kind = _KIND_CSV
    else:
        first_line = stripped.split(b"\n", 1)[0][:60].decode("utf-8", "replace")
        raise DataError(
            f"{name}: unrecognised content (not JSON, JSON Lines, CSV or Parquet); it starts with {first_line!r}. "
            'For plain text, upload JSON Lines with one {"text": ...} object per document.'
        )
    if inner == ".parquet" or (inner in (".json", ".jsonl", ".ndjson") and kind == _KIND_CSV):
        logger.warning(
            "%s: the content is %s although the name ends with %s; reading it as %s", name, kind, inner, kind
        )
    return kind, gz, head


def _looks_like_json_lines(head: bytes) -> bool:
    """True when the first line is a whole JSON object and more content follows it (a lone object may be a
    container such as ``{"data": [...]}``, which the JSON reader handles)."""
    end = head.find(b"\n")
    if end < 0 or not head[end:].strip():
        return False
    try:
        return isinstance(json.loads(head[:end]), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def iter_records(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_bad_line: OnBadLine | None = None,
    max_line_bytes: int | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_row_number, row)`` for every record of a dataset file, streaming.

    The number is the 1-based line where the record starts for text formats (JSON Lines, JSON, CSV) and the 1-based
    row for Parquet. Raises ``DataError`` naming the file, line and column for anything unreadable. With
    ``on_bad_line(line, message)``, problems confined to one record (a JSON Lines line that is not valid JSON, UTF-8
    or an object; a ragged CSV row; a non-object item of a JSON array) are passed to it and reading goes on; damage
    that cannot be skipped (a broken JSON array, a corrupt gzip or Parquet file, binary content) still raises.

    ``max_bytes`` caps the decompressed content (gzip, and the data Parquet pages decode to), counted while reading.
    ``max_line_bytes`` (None: no limit) caps every line of JSON Lines and CSV (a longer JSON Lines line is a bad line,
    a longer CSV line stops the file) and every record of a JSON document; no more than that is held in memory.
    """
    real = os.fspath(path)
    name = display_name(real)
    kind, gz, _ = _sniff(real, name, max_bytes)
    count = bad_lines = 0

    def bad(line: int, message: str) -> None:
        nonlocal bad_lines
        if on_bad_line is None:
            raise DataError(
                f"{name}: line {line} is {message}"
                if message.startswith("not valid UTF-8")
                else f"{name} line {line}: {message}"
            )
        bad_lines += 1
        on_bad_line(line, message)

    if kind == _KIND_PARQUET:
        records: Iterator[tuple[int, dict[str, Any]]] = iter_parquet(real, name, gz=gz, max_bytes=max_bytes)
    elif kind == _KIND_JSONL:
        records = iter_jsonl(real, name, bad, gz=gz, max_bytes=max_bytes, max_line_bytes=max_line_bytes)
    elif kind == _KIND_JSON:
        records = iter_json(real, name, bad, gz=gz, max_bytes=max_bytes, max_line_bytes=max_line_bytes)
    else:
        records = iter_csv(real, name, bad, gz=gz, max_bytes=max_bytes, max_line_bytes=max_line_bytes)
    for item in records:
        count += 1
        yield item
    if count == 0 and bad_lines == 0:
        raise DataError(f"{name} is empty: it holds no records.")


def record_unit(path: str | os.PathLike[str]) -> str:
    """'row' for Parquet files (numbers are row indexes), 'line' for every text format."""
    real = os.fspath(path)
    try:
        with open(real, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return "line"
    return "row" if head == PARQUET_MAGIC else "line"
