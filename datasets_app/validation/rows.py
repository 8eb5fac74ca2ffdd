"""One streaming pass over dataset files: records (engine readers), column mapping, format detection and conversion
to canonical examples, with every problem attached to its file and line instead of stopping the pass."""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import itertools
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from training.engine.data import (
    DEFAULT_MAX_BYTES,
    DatasetFormat,
    apply_column_mapping,
    detect_format,
    iter_records,
    parse_format,
    to_canonical,
)
from training.engine.data.fileio import bounded_lines, is_gzip, line_too_long_message, open_binary
from training.engine.data.formats import validate_column_mapping
from training.engine.errors import DataError

logger = logging.getLogger(__name__)

DETECT_SAMPLE = 100
DEFAULT_MAX_LINE_BYTES = 16 * 1024**2
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_LINE_PARSE_ERRORS = ("invalid JSON", "expected a JSON object", "is not valid UTF-8", "the line is longer than")


class ReadLimits(NamedTuple):
    """How much a pass may read: decompressed bytes per file (gzip, Parquet pages) and bytes per line (or record)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES


_DEFAULT_LIMITS = ReadLimits()
_LIMITS: contextvars.ContextVar[ReadLimits] = contextvars.ContextVar("dataset_read_limits", default=_DEFAULT_LIMITS)


@contextlib.contextmanager
def read_limits(*, max_bytes: int | None = None, max_line_bytes: int | None = None) -> Iterator[ReadLimits]:
    """Within the block, every ``RowStream`` that is not given limits of its own (validation, preview, statistics,
    preprocessing, split) reads with these (a limit left out keeps the current one)."""
    current = _LIMITS.get()
    limits = ReadLimits(
        max_bytes if max_bytes is not None else current.max_bytes,
        max_line_bytes if max_line_bytes is not None else current.max_line_bytes,
    )
    token = _LIMITS.set(limits)
    try:
        yield limits
    finally:
        _LIMITS.reset(token)


@dataclass(slots=True)
class Row:
    """One record of the input: where it is, the (mapped) record, its canonical example, or what is wrong with it."""

    file: str
    line: int
    record: dict[str, Any] | None
    example: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Issue:
    """A problem that is not tied to one converted row (unreadable file, undetectable format, bad option)."""

    message: str
    file: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the report's ``errors`` entries)."""
        return {"file": self.file, "line": self.line, "message": self.message}


def split_engine_message(name: str, message: str) -> tuple[int | None, str]:
    """Split an engine ``DataError`` message into (line, message without the "name line N:" prefix)."""
    m = re.match(rf"{re.escape(name)}(?: (?:line|row) (\d+))?:\s*", message)
    line: int | None = None
    if m:
        line = int(m.group(1)) if m.group(1) else None
        message = message[m.end() :]
    if line is None:
        found = re.match(r"(?:line|row) (\d+)\b", message)
        if found:
            line = int(found.group(1))
    return line, message


def _open_text_bytes(path: str) -> Any:
    with open(path, "rb") as fh:
        gz = fh.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115 - the caller closes it


def _reads_as_json_lines(path: str) -> bool:
    """Whether the engine reader treats the file as JSON Lines (one record per line), judged on the first 64 KiB."""
    try:
        with _open_text_bytes(path) as fh:
            head = fh.read(1 << 16)
    except (OSError, EOFError):
        return False
    if head.startswith(_BOM):
        head = head[3:]
    stripped = head.lstrip(b" \t\r\n")
    name = os.path.basename(path).lower()
    if name.endswith((".gz", ".gzip")):
        name = name.rsplit(".", 1)[0]
    suffix = os.path.splitext(name)[1]
    first = stripped[:1]
    if first == b"{":
        if suffix in (".jsonl", ".ndjson"):
            return True
        end = stripped.find(b"\n")
        if end < 0 or not stripped[end:].strip():
            return False
        try:
            return isinstance(json.loads(stripped[:end]), dict)
        except (ValueError, UnicodeDecodeError):
            return False
    return first not in (b"[", b"") and suffix in (".jsonl", ".ndjson", ".json")


def _json_lines_after(path: str, after: int, limits: ReadLimits) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yield (line, record or error message) for the JSON Lines after line ``after`` (continuing past bad lines).

    Private helper: the engine's ``iter_records`` stops at the first bad line; this resumes behind it, reading within
    the same limits (decompressed bytes counted, lines bounded).
    """
    name = os.path.basename(path)
    with open_binary(path, name, gz=is_gzip(path), max_bytes=limits.max_bytes) as fh:
        for lineno, raw in bounded_lines(fh, limits.max_line_bytes):
            if lineno <= after:
                continue
            if raw is None:
                yield lineno, line_too_long_message(limits.max_line_bytes)
                continue
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                if raw.strip():
                    yield lineno, f"invalid JSON ({exc.msg} at column {exc.colno})."
                continue
            except UnicodeDecodeError as exc:
                yield lineno, f"line {lineno} is not valid UTF-8 (byte {raw[exc.start : exc.start + 4]!r})."
                continue
            if type(value) is not dict:
                yield lineno, "expected a JSON object ({...}) per record."
                continue
            yield lineno, value


@dataclass
class RowStream:
    """Iterate ``Row`` objects over several files; the format is detected from the first rows unless given.

    After (or during) iteration: ``format``, ``format_detected``, ``issues`` (file-level problems) and ``files``
    (name and number of records per file) describe the input.
    """

    paths: Sequence[str]
    fmt: str | None = None
    column_mapping: Mapping[str, str] | None = None
    max_bytes: int | None = None  # None: the current ``read_limits``
    max_line_bytes: int | None = None
    convert: bool = True
    format: DatasetFormat | None = None
    format_detected: bool = False
    issues: list[Issue] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)
    limits: ReadLimits = field(default_factory=ReadLimits, init=False)
    file_index: int = 0
    _usable: bool = True

    def __post_init__(self) -> None:
        self.paths = [os.fspath(p) for p in self.paths]
        current = _LIMITS.get()
        self.limits = ReadLimits(
            self.max_bytes if self.max_bytes is not None else current.max_bytes,
            self.max_line_bytes if self.max_line_bytes is not None else current.max_line_bytes,
        )
        if not self.paths:
            self.issues.append(Issue("No dataset files were given."))
            self._usable = False
        try:
            self.format = parse_format(self.fmt)
        except DataError as exc:
            self.issues.append(Issue(str(exc)))
            self._usable = False
        try:
            self.mapping = validate_column_mapping(self.column_mapping)
        except DataError as exc:
            self.issues.append(Issue(str(exc)))
            self._usable = False

    def _records(self) -> Iterator[Row]:
        """Rows with their mapped record, or with the reading / mapping error of that line."""
        mapping = self.mapping
        for index, path in enumerate(self.paths):
            self.file_index = index
            name = os.path.basename(path)
            info = {"name": name, "rows": 0}
            self.files.append(info)
            last = 0
            tail: Iterator[tuple[int, dict[str, Any] | str]] | None = None
            try:
                for line, record in iter_records(
                    path, max_bytes=self.limits.max_bytes, max_line_bytes=self.limits.max_line_bytes
                ):
                    last = line
                    info["rows"] += 1
                    yield self._map(name, line, record, mapping)
            except DataError as exc:
                line, message = split_engine_message(name, str(exc))
                if line is None:
                    self.issues.append(Issue(message, name))
                    continue
                info["rows"] += 1
                if any(k in message for k in _LINE_PARSE_ERRORS) and line > last and _reads_as_json_lines(path):
                    yield Row(name, line, None, error=message)
                    tail = _json_lines_after(path, line, self.limits)
                else:
                    yield Row(name, line, None, error=f"{message} Reading of this file stopped here.")
            if tail is not None:
                try:
                    for line, value in tail:
                        info["rows"] += 1
                        if isinstance(value, str):
                            yield Row(name, line, None, error=value)
                        else:
                            yield self._map(name, line, value, mapping)
                except (DataError, OSError, EOFError) as exc:
                    self.issues.append(Issue(split_engine_message(name, str(exc))[1], name))

    @staticmethod
    def _map(name: str, line: int, record: dict[str, Any], mapping: dict[str, str]) -> Row:
        if not mapping:
            return Row(name, line, record)
        try:
            return Row(name, line, apply_column_mapping(record, mapping))
        except DataError as exc:
            return Row(name, line, None, error=str(exc))

    def __iter__(self) -> Iterator[Row]:
        if not self._usable:
            return
        records = self._records()
        head = list(itertools.islice(records, DETECT_SAMPLE)) if self.format is None else []
        if self.format is None:
            sample = [row.record for row in head if row.record is not None]
            if sample:
                try:
                    self.format = detect_format(sample)
                    self.format_detected = True
                except DataError as exc:
                    self.issues.append(Issue(str(exc)))
        fmt = self.format if self.convert else None
        for row in itertools.chain(head, records):
            if fmt is not None and row.record is not None:
                try:
                    row.example = to_canonical(row.record, fmt)
                except DataError as exc:
                    row.error = str(exc)
            yield row


class ProgressEstimator:
    """Turns (file index, line) into a fraction of the whole input, weighting files by size; text files are
    measured in lines (counted once, fast), compressed and Parquet files by whole files."""

    def __init__(self, paths: Sequence[str], callback: Callable[[float], None] | None) -> None:
        self.callback = callback
        self._last = -1.0
        self._sizes = [max(os.path.getsize(p), 1) if os.path.exists(p) else 1 for p in paths]
        self._total = float(sum(self._sizes)) or 1.0
        self._lines: list[int | None] = [self._count_lines(p) if callback else None for p in paths]

    @staticmethod
    def _count_lines(path: str) -> int | None:
        """Newlines in an uncompressed text file (None for gzip and Parquet: those advance file by file)."""
        try:
            with open(path, "rb") as fh:
                if fh.read(4)[:2] == _GZIP_MAGIC or fh.tell() == 0:
                    return None
                fh.seek(0)
                if fh.read(4) == b"PAR1":
                    return None
                fh.seek(0)
                return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 22), b"")) + 1
        except OSError:
            return None

    def update(self, file_index: int, line: int, *, scale: float = 1.0) -> None:
        """Report progress (scaled into ``[0, scale]``) at most once per percent."""
        if self.callback is None:
            return
        done = sum(self._sizes[:file_index])
        lines = self._lines[file_index] if file_index < len(self._lines) else None
        if lines:
            done += self._sizes[file_index] * min(line / lines, 1.0)
        fraction = round(min(done / self._total, 1.0) * scale, 3)
        if fraction >= self._last + 0.01:
            self._last = fraction
            self.callback(fraction)
