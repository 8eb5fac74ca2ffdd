"""Streaming JSON readers: JSON Lines, and JSON documents (a top-level array, an object holding one list of records,
or concatenated objects), with line and column numbers in every error."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import IO, Any

from training.engine.errors import DataError

from .fileio import (
    BOM,
    CHUNK,
    OnBadLine,
    bounded_lines,
    human_size,
    invalid_json,
    invalid_json_message,
    line_too_long_message,
    not_object_message,
    not_utf8_message,
    open_binary,
)

_WS = re.compile(r"[ \t\n\r]*")
# Keys whose list-of-objects value belongs to one record (a lone ShareGPT record), not to a container of records.
_RECORD_LIST_KEYS = frozenset(
    {"conversations", "conversation", "messages", "chosen", "rejected", "prompt", "completion", "history", "instances"}
)


def iter_jsonl(
    path: str, name: str, bad: OnBadLine, *, gz: bool, max_bytes: int, max_line_bytes: int | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    loads = json.loads
    with open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        for lineno, raw in bounded_lines(fh, max_line_bytes):
            if raw is None:
                bad(lineno, line_too_long_message(max_line_bytes or 0))
                continue
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[3:]
            try:
                row = loads(raw)
            except json.JSONDecodeError as exc:
                if raw.strip():
                    bad(lineno, invalid_json_message(exc.msg, exc.colno))
                continue
            except UnicodeDecodeError as exc:
                bad(lineno, not_utf8_message(exc, raw))
                continue
            if type(row) is not dict:
                bad(lineno, not_object_message(row))
                continue
            yield lineno, row


# --- JSON (array, object holding a list, concatenated objects) ----------------------------------------------------


class _TextStream:
    """A sliding text window over a UTF-8 byte stream that decodes JSON values one at a time with line tracking."""

    def __init__(self, fh: IO[bytes], name: str, max_value: int | None = None) -> None:
        self._fh = fh
        self.name = name
        self._max_value = max_value  # the longest value (record) allowed, in characters
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

    def fill(self, at_least: int = CHUNK) -> bool:
        """Append at least one more chunk; drop what was consumed. False at end of input."""
        if self.eof:
            return False
        data = self._fh.read(max(at_least, CHUNK))
        if self._first:
            self._first = False
            if data.startswith(BOM):
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
        raise invalid_json(self.name, self.line_at(pos), msg, self.col_at(pos))

    def value(self) -> Any:
        """Decode the JSON value at the current position, reading more input as needed."""
        self.peek()
        while True:
            try:
                obj, end = self._json.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                near_end = exc.pos >= len(self.buf) - 6 or exc.msg.startswith("Unterminated string")
                if near_end and not self.eof:
                    self._check_size()
                    self.fill(len(self.buf))
                    continue
                raise invalid_json(self.name, self.line_at(exc.pos), exc.msg, self.col_at(exc.pos)) from None
            if end >= len(self.buf) and not self.eof and not isinstance(obj, (dict, list, str)):
                self.fill()  # a number or literal may continue in the next chunk
                continue
            self.pos = end
            return obj

    def _check_size(self) -> None:
        """Refuse a value that has grown past the limit before reading more of it (it runs to the buffer's end)."""
        if self._max_value is not None and len(self.buf) - self.pos > self._max_value:
            raise DataError(
                f"{self.name} line {self.line_at(self.pos)}: the record is longer than {human_size(self._max_value)} "
                "(max_line_bytes); split it or shorten its texts."
            )

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


def iter_json(
    path: str, name: str, bad: OnBadLine, *, gz: bool, max_bytes: int, max_line_bytes: int | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        ts = _TextStream(fh, name, max_line_bytes)
        first = ts.peek()
        if first == "[":
            yield from _json_array(ts, bad)
            return
    # A top-level object: either a container ({"data": [...]}) or a stream of pretty-printed records.
    lists, single = _classify_objects(path, name, gz=gz, max_bytes=max_bytes, max_value=max_line_bytes)
    with open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        ts = _TextStream(fh, name, max_line_bytes)
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
                        bad(line, not_object_message(value))
                        continue
                    yield line, value
            return
        while ts.peek():
            if ts.peek() != "{":
                ts.error("Expecting '{'")
            line = ts.line_at(ts.pos)
            value = ts.value()
            yield line, value


def _classify_objects(
    path: str, name: str, *, gz: bool, max_bytes: int, max_value: int | None
) -> tuple[list[str], bool]:
    """First pass: the keys of the first object whose values are lists of objects, and whether it is alone."""
    lists: list[str] = []
    with open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        ts = _TextStream(fh, name, max_value)
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
                bad(line, not_object_message(value))
            else:
                yield line, value
            if ts.expect(",]", "',' delimiter") == "]":
                break
    if ts.peek():
        ts.error("Unexpected content after the top-level JSON array")
