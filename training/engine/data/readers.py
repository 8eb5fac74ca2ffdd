"""Streaming readers for dataset files: JSON Lines, JSON arrays, CSV, Parquet, and any of them gzipped.

The real type is sniffed from the content (gzip and Parquet magic bytes, the first non-blank character), so a file
whose suffix is missing or wrong is still read; the suffix only breaks ties (``.tsv`` vs ``.csv``, a ``.jsonl`` whose
first line is broken). Memory stays bounded by the largest single record, never the whole file.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

from training.engine.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 * 1024**3
"""Default cap on the decompressed size of a gzipped file (guards against gzip bombs)."""

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
_CHUNK = 1 << 20
_SNIFF_BYTES = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_BOM = b"\xef\xbb\xbf"
_WS = re.compile(r"[ \t\n\r]*")
_JSON_WS = b" \t\r\n"
_KIND_JSONL = "jsonl"
_KIND_JSON = "json"  # a top-level array, an object holding one list, or concatenated objects
_KIND_CSV = "csv"
_KIND_PARQUET = "parquet"
OnBadLine = Callable[[int, str], None]
# Keys whose list-of-objects value belongs to one record (a lone ShareGPT record), not to a container of records.
_RECORD_LIST_KEYS = frozenset(
    {"conversations", "conversation", "messages", "chosen", "rejected", "prompt", "completion", "history", "instances"}
)


def display_name(path: str | os.PathLike[str]) -> str:
    """The name used in messages: the file's base name (never the server's full path)."""
    return os.path.basename(os.fspath(path)) or os.fspath(path)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"  # pragma: no cover


class _LimitedGzip(io.RawIOBase):
    """A raw reader over a gzip stream that raises ``DataError`` once more than ``max_bytes`` come out of it."""

    def __init__(self, path: str, name: str, max_bytes: int) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._gz = gzip.GzipFile(fileobj=self._fh, mode="rb")
        self._name = name
        self._max = max_bytes
        self._total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            n = self._gz.readinto(buffer)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{self._name}: the gzip data is corrupt or truncated ({exc}).") from exc
        self._total += n
        if self._total > self._max:
            raise DataError(
                f"{self._name}: decompresses to more than {_human(self._max)} (max_bytes); refusing to read further "
                "(a gzip bomb, or raise max_bytes if the file is genuinely that large)."
            )
        return n

    def close(self) -> None:
        try:
            self._gz.close()
        finally:
            self._fh.close()
            super().close()


def _open_binary(path: str, name: str, *, gz: bool, max_bytes: int) -> IO[bytes]:
    if gz:
        return io.BufferedReader(_LimitedGzip(path, name, max_bytes), buffer_size=_CHUNK)
    return open(path, "rb", buffering=_CHUNK)  # noqa: SIM115 - the caller closes it


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _suffixes(name: str) -> tuple[str, str]:
    """(inner suffix, outer suffix) in lower case: ``a.jsonl.gz`` -> ('.jsonl', '.gz')."""
    lower = name.lower()
    root, outer = os.path.splitext(lower)
    if outer in (".gz", ".gzip"):
        return os.path.splitext(root)[1], outer
    return outer, ""


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
    gz = _is_gzip(path)
    with _open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        head = fh.read(_SNIFF_BYTES)
        # Skip leading whitespace in bigger steps so a file padded with blanks is still sniffed correctly.
        while head.lstrip(_JSON_WS) == b"" and head:
            more = fh.read(_SNIFF_BYTES)
            if not more:
                break
            head = more
    if head.startswith(_PARQUET_MAGIC):
        return _KIND_PARQUET, gz, head
    if not head.strip():
        raise DataError(f"{name} is empty." if not gz else f"{name} is empty once decompressed.")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{name} is UTF-16 encoded; save it as UTF-8 and upload it again.")
    text_head = head[3:] if head.startswith(_BOM) else head
    stripped = text_head.lstrip(_JSON_WS)
    inner, _ = _suffixes(name)
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
    path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, on_bad_line: OnBadLine | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_row_number, row)`` for every record of a dataset file, streaming.

    The number is the 1-based line where the record starts for text formats (JSON Lines, JSON, CSV) and the 1-based
    row for Parquet. Raises ``DataError`` naming the file, line and column for anything unreadable. With
    ``on_bad_line(line, message)``, problems confined to one record (a JSON Lines line that is not valid JSON, UTF-8
    or an object; a ragged CSV row; a non-object item of a JSON array) are passed to it and reading goes on; damage
    that cannot be skipped (a broken JSON array, a corrupt gzip or Parquet file, binary content) still raises.
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
        records: Iterator[tuple[int, dict[str, Any]]] = _iter_parquet(real, name, gz=gz, max_bytes=max_bytes)
    elif kind == _KIND_JSONL:
        records = _iter_jsonl(real, name, bad, gz=gz, max_bytes=max_bytes)
    elif kind == _KIND_JSON:
        records = _iter_json(real, name, bad, gz=gz, max_bytes=max_bytes)
    else:
        records = _iter_csv(real, name, bad, gz=gz, max_bytes=max_bytes)
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
    return "row" if head == _PARQUET_MAGIC else "line"


# --- JSON Lines -------------------------------------------------------------------------------------------------


def _not_utf8(name: str, line: int, exc: UnicodeDecodeError, raw: bytes) -> DataError:
    return DataError(f"{name}: line {line} is {_not_utf8_message(exc, raw)}")


def _not_utf8_message(exc: UnicodeDecodeError, raw: bytes) -> str:
    bad = raw[exc.start : exc.start + 4]
    return f"not valid UTF-8 (byte {bad!r} at column {exc.start + 1}); save the file as UTF-8 and upload it again."


def _invalid_json(name: str, line: int, msg: str, column: int) -> DataError:
    return DataError(f"{name} line {line}: {_invalid_json_message(msg, column)}")


def _invalid_json_message(msg: str, column: int) -> str:
    return (
        f"invalid JSON ({msg} column {column})."
        if msg.endswith(" at")
        else f"invalid JSON ({msg} at column {column})."
    )


def _not_object_message(value: Any) -> str:
    kind = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
    return f"expected a JSON object ({{...}}) per record, found {kind}."


def _iter_jsonl(
    path: str, name: str, bad: OnBadLine, *, gz: bool, max_bytes: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    loads = json.loads
    with _open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[3:]
            try:
                row = loads(raw)
            except json.JSONDecodeError as exc:
                if raw.strip():
                    bad(lineno, _invalid_json_message(exc.msg, exc.colno))
                continue
            except UnicodeDecodeError as exc:
                bad(lineno, _not_utf8_message(exc, raw))
                continue
            if type(row) is not dict:
                bad(lineno, _not_object_message(row))
                continue
            yield lineno, row


# --- JSON (array, object holding a list, concatenated objects) ----------------------------------------------------


class _TextStream:
    """A sliding text window over a UTF-8 byte stream that decodes JSON values one at a time with line tracking."""

    def __init__(self, fh: IO[bytes], name: str) -> None:
        self._fh = fh
        self.name = name
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._raw_lines = 0  # newlines in the bytes decoded so far (for UTF-8 error messages)
        self.buf = ""
        self.pos = 0
        self.eof = False
        self._base_line = 1  # line number of buf[0]
        self._base_col = 0  # column (0-based) of buf[0]
        self._cur_pos = 0  # cached (position, line) to count newlines incrementally
        self._cur_line = 1
        self._json = json.JSONDecoder()
        self._first = True

    def fill(self, at_least: int = _CHUNK) -> bool:
        """Append at least one more chunk; drop what was consumed. False at end of input."""
        if self.eof:
            return False
        data = self._fh.read(max(at_least, _CHUNK))
        if self._first:
            self._first = False
            if data.startswith(_BOM):
                data = data[3:]
        final = not data
        try:
            text = self._decoder.decode(data, final=final)
        except UnicodeDecodeError as exc:
            line = self._raw_lines + data[: max(exc.start, 0)].count(b"\n") + 1
            raise DataError(
                f"{self.name}: line {line} is not valid UTF-8 (byte {data[exc.start : exc.start + 4]!r}); "
                "save the file as UTF-8 and upload it again."
            ) from None
        self._raw_lines += data.count(b"\n")
        if self.pos:
            consumed = self.buf[: self.pos]
            nl = consumed.count("\n")
            if nl:
                self._base_line += nl
                self._base_col = self.pos - consumed.rfind("\n") - 1
            else:
                self._base_col += self.pos
            self.buf = self.buf[self.pos :]
            self._cur_pos, self._cur_line = 0, self._base_line
            self.pos = 0
        self.buf += text
        if final:
            self.eof = True
        return bool(text) or not final

    def line_at(self, pos: int) -> int:
        """1-based line number of buffer position ``pos`` (positions must not go backwards between calls)."""
        if pos < self._cur_pos:
            self._cur_pos, self._cur_line = 0, self._base_line
        self._cur_line += self.buf.count("\n", self._cur_pos, pos)
        self._cur_pos = pos
        return self._cur_line

    def col_at(self, pos: int) -> int:
        """1-based column of buffer position ``pos``."""
        nl = self.buf.rfind("\n", 0, pos)
        return pos - nl if nl >= 0 else self._base_col + pos + 1

    def peek(self) -> str:
        """Skip whitespace and return the next character ('' at end of input)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def expect(self, chars: str, what: str) -> str:
        """Consume one of ``chars`` (after whitespace) or raise a JSON error naming line and column."""
        ch = self.peek()
        if ch and ch in chars:
            self.pos += 1
            return ch
        self.error(f"Expecting {what}" if ch else f"Expecting {what} but the file ended")
        raise AssertionError  # pragma: no cover

    def error(self, msg: str) -> None:
        pos = min(self.pos, len(self.buf))
        raise _invalid_json(self.name, self.line_at(pos), msg, self.col_at(pos))

    def value(self) -> Any:
        """Decode the JSON value at the current position, reading more input as needed."""
        self.peek()
        while True:
            try:
                obj, end = self._json.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                near_end = exc.pos >= len(self.buf) - 6 or exc.msg.startswith("Unterminated string")
                if near_end and not self.eof:
                    self.fill(len(self.buf))
                    continue
                raise _invalid_json(self.name, self.line_at(exc.pos), exc.msg, self.col_at(exc.pos)) from None
            if end >= len(self.buf) and not self.eof and not isinstance(obj, (dict, list, str)):
                self.fill()  # a number or literal may continue in the next chunk
                continue
            self.pos = end
            return obj

    def key(self) -> str:
        """Decode an object key (a JSON string) and the colon after it."""
        if self.peek() != '"':
            self.error("Expecting property name enclosed in double quotes")
        key = self.value()
        self.expect(":", "':' delimiter")
        return str(key)


def _scan_object(ts: _TextStream) -> Iterator[tuple[str, int, int, Any]]:
    """Walk one top-level object shallowly: yield (key, item_index, line, value) for items of list values
    (index >= 1) and (key, 0, line, value) for other values; lists are never held in memory whole."""
    ts.expect("{", "'{'")
    if ts.peek() == "}":
        ts.pos += 1
        return
    while True:
        key = ts.key()
        if ts.peek() == "[":
            ts.pos += 1
            index = 0
            if ts.peek() == "]":
                ts.pos += 1
            else:
                while True:
                    index += 1
                    ts.peek()
                    line = ts.line_at(ts.pos)
                    yield key, index, line, ts.value()
                    if ts.expect(",]", "',' delimiter") == "]":
                        break
        else:
            line = ts.line_at(ts.pos)
            yield key, 0, line, ts.value()
        if ts.expect(",}", "',' delimiter") == "}":
            return


def _iter_json(
    path: str, name: str, bad: OnBadLine, *, gz: bool, max_bytes: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        ts = _TextStream(fh, name)
        first = ts.peek()
        if first == "[":
            yield from _json_array(ts, bad)
            return
    # A top-level object: either a container ({"data": [...]}) or a stream of pretty-printed records.
    lists, single = _classify_objects(path, name, gz=gz, max_bytes=max_bytes)
    with _open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        ts = _TextStream(fh, name)
        if single and lists:
            if len(lists) > 1:
                raise DataError(
                    f"{name} is a JSON object holding several lists of records ({', '.join(lists)}); "
                    "split it into one file per list."
                )
            wanted = lists[0]
            for key, index, line, value in _scan_object(ts):
                if key == wanted and index:
                    if type(value) is not dict:
                        bad(line, _not_object_message(value))
                        continue
                    yield line, value
            return
        while ts.peek():
            if ts.peek() != "{":
                ts.error("Expecting '{'")
            line = ts.line_at(ts.pos)
            value = ts.value()
            yield line, value


def _classify_objects(path: str, name: str, *, gz: bool, max_bytes: int) -> tuple[list[str], bool]:
    """First pass: the keys of the first object whose values are lists of objects, and whether it is alone."""
    lists: list[str] = []
    with _open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        ts = _TextStream(fh, name)
        for key, index, _line, value in _scan_object(ts):
            if index == 1 and type(value) is dict and key not in lists and key not in _RECORD_LIST_KEYS:
                lists.append(key)
        return lists, ts.peek() == ""


def _json_array(ts: _TextStream, bad: OnBadLine) -> Iterator[tuple[int, dict[str, Any]]]:
    ts.expect("[", "'['")
    if ts.peek() == "]":
        ts.pos += 1
    else:
        while True:
            ts.peek()
            line = ts.line_at(ts.pos)
            value = ts.value()
            if type(value) is not dict:
                bad(line, _not_object_message(value))
            else:
                yield line, value
            if ts.expect(",]", "',' delimiter") == "]":
                break
    if ts.peek():
        ts.error("Unexpected content after the top-level JSON array")


# --- CSV ----------------------------------------------------------------------------------------------------------


def _decoded_lines(fh: IO[bytes], name: str) -> Iterator[str]:
    for lineno, raw in enumerate(fh, 1):
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(name, lineno, exc, raw) from None


def _delimiter(header: str, name: str) -> str:
    inner, _ = _suffixes(name)
    if inner == ".tsv":
        return "\t"
    counts = {d: header.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _iter_csv(
    path: str, name: str, bad: OnBadLine, *, gz: bool, max_bytes: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    if csv.field_size_limit() < 2**31 - 1:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents are normal in TEXT datasets
    with _open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        lines = _decoded_lines(fh, name)
        try:
            first = next(lines)
        except StopIteration:  # pragma: no cover - _sniff rejects empty files
            return

        def chained() -> Iterator[str]:
            yield first
            yield from lines

        reader = csv.reader(chained(), delimiter=_delimiter(first, name))
        try:
            header = next(reader)
            _check_header(header, name)
            width = len(header)
            previous = reader.line_num
            for record in reader:
                start = previous + 1
                previous = reader.line_num
                if not record or (len(record) == 1 and not record[0].strip() and width > 1):
                    continue  # blank line
                if len(record) != width:
                    bad(
                        start,
                        f"has {len(record)} field{'s' if len(record) != 1 else ''} but the header has {width} "
                        f"({', '.join(header)}); check the quoting and delimiters on that line.",
                    )
                    continue
                yield start, dict(zip(header, record, strict=True))
        except csv.Error as exc:
            raise DataError(f"{name} line {reader.line_num}: invalid CSV ({exc}).") from None


def _check_header(header: list[str], name: str) -> None:
    if not header or all(not h.strip() for h in header):
        raise DataError(f"{name} line 1: the CSV header row is empty.")
    seen: set[str] = set()
    for col in header:
        if col in seen:
            raise DataError(f"{name} line 1: the CSV header names column '{col}' twice.")
        seen.add(col)
    if len(header) == 1 and not header[0].strip().isidentifier():
        logger.info("%s: a CSV with a single column '%s'", name, header[0][:40])


# --- Parquet ------------------------------------------------------------------------------------------------------


def _iter_parquet(path: str, name: str, *, gz: bool, max_bytes: int) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp: str | None = None
    try:
        if gz:  # Parquet needs random access: decompress (within max_bytes) to a temporary file first
            with _open_binary(path, name, gz=True, max_bytes=max_bytes) as src:
                fd, tmp = tempfile.mkstemp(suffix=".parquet", prefix="finetune-")
                with os.fdopen(fd, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
        try:
            pf = pq.ParquetFile(tmp or path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{name}: not a valid Parquet file ({exc}).") from None
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=2048):
                for record in batch.to_pylist():
                    row += 1
                    yield row, record
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{name} row {row + 1}: cannot read the Parquet data ({exc}).") from None
    finally:
        if tmp:
            os.unlink(tmp)
