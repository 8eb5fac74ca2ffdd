"""Opening dataset files (plain or gzipped within a decompressed-size cap), reading lines of bounded length, and the
wording of per-record errors, shared by the readers of every format."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

from training.engine.errors import DataError

DEFAULT_MAX_BYTES = 20 * 1024**3
"""Default cap on the decompressed size of a file: gzip content, and the data Parquet pages decode to (guards against
compression bombs)."""

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
BOM = b"\xef\xbb\xbf"
OnBadLine = Callable[[int, str], None]


def display_name(path: str | os.PathLike[str]) -> str:
    """The name used in messages: the file's base name (never the server's full path)."""
    return os.path.basename(os.fspath(path)) or os.fspath(path)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"  # pragma: no cover


class LimitedGzip(io.RawIOBase):
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
                f"{self._name}: decompresses to more than {human_size(self._max)} (max_bytes); refusing to read further "
                "(a gzip bomb, or raise max_bytes if the file is genuinely that large)."
            )
        return n

    def close(self) -> None:
        try:
            self._gz.close()
        finally:
            self._fh.close()
            super().close()


def line_too_long_message(max_line_bytes: int) -> str:
    return (
        f"the line is longer than {human_size(max_line_bytes)} (max_line_bytes); each record must be on its own "
        "line, so check the file is not one giant line."
    )


def bounded_lines(fh: IO[bytes], max_line_bytes: int | None) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line number, raw line)`` from 1, holding at most ``max_line_bytes`` (+1) of a line in memory: a longer
    line is read past in chunks and yielded as ``None`` (its length, newline aside, is over the limit)."""
    if max_line_bytes is None:
        yield from enumerate(fh, 1)
        return
    lineno = 0
    while True:
        raw = fh.readline(max_line_bytes + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) <= max_line_bytes or raw.endswith(b"\n"):
            yield lineno, raw
            continue
        while True:  # skip the rest of the line
            rest = fh.readline(CHUNK)
            if not rest or rest.endswith(b"\n"):
                break
        yield lineno, None


def open_binary(path: str, name: str, *, gz: bool, max_bytes: int) -> IO[bytes]:
    if gz:
        return io.BufferedReader(LimitedGzip(path, name, max_bytes), buffer_size=CHUNK)
    return open(path, "rb", buffering=CHUNK)  # noqa: SIM115 - the caller closes it


def is_gzip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def suffixes(name: str) -> tuple[str, str]:
    """(inner suffix, outer suffix) in lower case: ``a.jsonl.gz`` -> ('.jsonl', '.gz')."""
    lower = name.lower()
    root, outer = os.path.splitext(lower)
    if outer in (".gz", ".gzip"):
        return os.path.splitext(root)[1], outer
    return outer, ""


def not_utf8(name: str, line: int, exc: UnicodeDecodeError, raw: bytes) -> DataError:
    return DataError(f"{name}: line {line} is {not_utf8_message(exc, raw)}")


def not_utf8_message(exc: UnicodeDecodeError, raw: bytes) -> str:
    bad = raw[exc.start : exc.start + 4]
    return f"not valid UTF-8 (byte {bad!r} at column {exc.start + 1}); save the file as UTF-8 and upload it again."


def invalid_json(name: str, line: int, msg: str, column: int) -> DataError:
    return DataError(f"{name} line {line}: {invalid_json_message(msg, column)}")


def invalid_json_message(msg: str, column: int) -> str:
    return (
        f"invalid JSON ({msg} column {column})."
        if msg.endswith(" at")
        else f"invalid JSON ({msg} at column {column})."
    )


def not_object_message(value: Any) -> str:
    kind = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
    return f"expected a JSON object ({{...}}) per record, found {kind}."
