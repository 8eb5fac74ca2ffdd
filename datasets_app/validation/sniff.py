"""``sniff_content``: check at upload that a file's content is what its name says, reading only its first megabytes.

Parquet magic (head and tail), UTF-8 JSON Lines whose first lines parse, CSV with consistent columns, gzip unwrapped
with bounded decompression (its content counted, never taken from the trailer: a gzip-bomb guard), binary garbage
refused.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import zlib

from training.engine.data import DEFAULT_MAX_BYTES

from .gunzip import GzipCounter

SAMPLE_BYTES = 4 << 20
"""How much (decompressed) content is inspected."""
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_BOM = b"\xef\xbb\xbf"
_JSON_LINES_CHECKED = 5
_CSV_ROWS_CHECKED = 50
_BOMB_RATIO = 100  # a deflate stream expanding more than this is extrapolated to its full size
_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
_NAMES = {"jsonl": "JSON Lines", "json": "JSON", "csv": "CSV", "parquet": "Parquet"}


class ContentMismatch(ValueError):
    """The file's content does not match its name, or it is not a dataset file at all (the message says why)."""


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _claimed(claimed_ext: str) -> tuple[str | None, str]:
    """(claimed kind or None when unknown, the extension as written for messages) from '.csv', 'csv' or a name."""
    name = os.path.basename(claimed_ext.strip().lower())
    if "." not in name:
        name = "." + name
    root, ext = os.path.splitext(name)
    if ext in (".gz", ".gzip"):
        root, ext = os.path.splitext(root)
        if not ext and root.startswith("."):
            ext = root
    if not ext and name.startswith("."):
        ext = name
    return _KINDS.get(ext), ext or name


def _gunzip_head(path: str, size: int, max_decompressed: int) -> bytes:
    """The first ``SAMPLE_BYTES`` of a gzip file's content; raise ``ContentMismatch`` when the content, counted as it
    is decompressed, passes ``max_decompressed``, or for a likely gzip bomb (extrapolated from the sample)."""
    gunzip = GzipCounter(piece=1 << 16)
    want = min(SAMPLE_BYTES, max_decompressed) + 1
    out = bytearray()
    with open(path, "rb") as fh:
        while len(out) < want and not gunzip.ended:
            chunk = fh.read(1 << 16)
            if not chunk:
                break
            try:
                for piece in gunzip.feed(chunk):
                    out += piece
                    if len(out) >= want:
                        break
            except zlib.error as exc:
                raise ContentMismatch(f"The gzip data is corrupt ({exc}).") from None
    if not out:
        raise ContentMismatch("The file is empty once decompressed.")
    if len(out) > max_decompressed:  # counted, whatever the trailer says
        raise ContentMismatch(f"The gzip file expands to more than {_human(max_decompressed)}, the most allowed.")
    if len(out) > SAMPLE_BYTES:
        ratio = len(out) / max(gunzip.consumed, 1)
        estimate = ratio * size
        if ratio > _BOMB_RATIO and estimate > max_decompressed:
            raise ContentMismatch(
                f"The gzip file expands to about {_human(estimate)} (compression ratio {ratio:.0f}:1), more than the "
                f"{_human(max_decompressed)} allowed: refusing a likely gzip bomb."
            )
    # The trailer's ISIZE is only a hint (modulo 4 GiB, and the last member's alone), honest when it is too large.
    if size >= 18:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            isize = int.from_bytes(fh.read(4), "little")
        if isize > max_decompressed:
            raise ContentMismatch(
                f"The gzip file expands to {_human(isize)}, more than the {_human(max_decompressed)} allowed."
            )
    if out.startswith(_GZIP_MAGIC):
        raise ContentMismatch("The file is gzip inside gzip; upload it compressed once.")
    return bytes(out[:SAMPLE_BYTES])


def _looks_binary(sample: bytes) -> bool:
    head = sample[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 13, 12))
    return controls > max(len(head) // 100, 2)


def _decode(sample: bytes, complete: bool) -> str | None:
    """UTF-8 text of the sample (a sequence cut at the end is allowed when the sample is not the whole file)."""
    try:
        return codecs.getincrementaldecoder("utf-8")("strict").decode(sample, final=complete)
    except UnicodeDecodeError:
        return None


def _content_kind(text: str, complete: bool) -> tuple[str, str | None]:
    """(kind, problem) of UTF-8 text: "json" for an array or a pretty-printed object, "jsonl" when one of the first
    lines is a JSON object, "csv" for anything else; ``problem`` says why JSON-looking text is neither."""
    stripped = text.lstrip(" \t\r\n")
    if stripped.startswith("["):
        return "json", None
    if not stripped.startswith("{"):
        return "csv", None
    lines = stripped.split("\n")
    if not complete:
        lines = lines[:-1]  # the last line may be cut by the sample
    first_line = lines[0].strip() if lines else stripped.strip()
    checked = 0
    first_error: str | None = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        checked += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            first_error = first_error or f"line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
        else:
            if isinstance(value, dict):
                return "jsonl", None
        if checked >= _JSON_LINES_CHECKED:
            break
    if not lines or first_line == "{" or first_line.endswith(("{", "[", ",")):
        return "json", None  # one pretty-printed document, or records spread over several lines
    return "jsonl", f"its first lines are not JSON objects ({first_error or 'no complete line'})"


def _check_csv(text: str, complete: bool, ext: str) -> None:
    lines = text.splitlines(keepends=True)
    if not complete and lines:
        lines = lines[:-1]
    head_lines = lines[: _CSV_ROWS_CHECKED * 4]
    cut = not complete or len(head_lines) < len(lines)  # the last record of the head may be incomplete
    head = "".join(head_lines)
    first = head.split("\n", 1)[0]
    if ext == ".tsv":
        delimiter = "\t"
    else:
        counts = {d: first.count(d) for d in (",", "\t", ";", "|")}
        delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    reader = csv.reader(io.StringIO(head), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ContentMismatch("The CSV file has no header row.") from None
    except csv.Error as exc:
        raise ContentMismatch(f"The CSV header cannot be parsed ({exc}).") from None
    if not any(h.strip() for h in header):
        raise ContentMismatch("The CSV header row is empty.")
    width = len(header)
    previous = reader.line_num
    checked = 0
    try:
        for record in reader:
            start = previous + 1
            previous = reader.line_num
            if not record or (len(record) == 1 and not record[0].strip() and width > 1):
                continue
            if len(record) != width and not (cut and reader.line_num >= len(head_lines)):
                raise ContentMismatch(
                    f"The file is named {ext} but its rows have inconsistent columns: line {start} has {len(record)} "
                    f"field{'s' if len(record) != 1 else ''} and the header has {width}."
                )
            checked += 1
            if checked >= _CSV_ROWS_CHECKED:
                break
    except csv.Error as exc:
        raise ContentMismatch(
            f"The file is named {ext} but line {reader.line_num} is not valid CSV ({exc})."
        ) from None


def sniff_content(path: str, claimed_ext: str, *, max_decompressed: int = DEFAULT_MAX_BYTES) -> str:
    """Return the real kind of a dataset file ("jsonl", "json", "csv" or "parquet"; gzip is unwrapped) or raise
    ``ContentMismatch`` when the content contradicts ``claimed_ext`` (an extension such as ".csv" or a file name)
    or is not a dataset at all (binary data, not UTF-8, a gzip bomb past ``max_decompressed`` bytes)."""
    claimed, ext = _claimed(claimed_ext)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            raw = fh.read(SAMPLE_BYTES)
            tail = b""
            if size >= 8:
                fh.seek(-4, os.SEEK_END)
                tail = fh.read(4)
    except OSError as exc:
        raise ContentMismatch(f"The file cannot be read ({exc.strerror or exc}).") from None
    if size == 0:
        raise ContentMismatch("The file is empty.")
    gz = raw.startswith(_GZIP_MAGIC)
    if gz:
        sample = _gunzip_head(path, size, max_decompressed)
        complete = len(sample) < SAMPLE_BYTES
    else:
        sample, complete = raw, size <= SAMPLE_BYTES
    named = f"The file is named {ext}" if claimed else "The file"

    if sample.startswith(_PARQUET_MAGIC):
        if not gz and tail != _PARQUET_MAGIC:
            raise ContentMismatch(f"{named} and starts like Parquet but is truncated or corrupt (no Parquet footer).")
        if claimed not in (None, "parquet"):
            raise ContentMismatch(f"{named} but its content is Parquet.")
        return "parquet"
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ContentMismatch(f"{named} but it is UTF-16 encoded; save it as UTF-8 and upload it again.")
    if _looks_binary(sample):
        raise ContentMismatch(f"{named} but its content is binary data, not {_NAMES.get(claimed or '', 'text')}.")
    text = _decode(sample[3:] if sample.startswith(_BOM) else sample, complete)
    if text is None:
        raise ContentMismatch(f"{named} but its content is not UTF-8 text; save it as UTF-8 and upload it again.")
    if not text.strip():
        raise ContentMismatch("The file holds only whitespace.")
    if claimed == "parquet":
        kind = _content_kind(text, complete)[0]
        raise ContentMismatch(f"{named} but it is not a Parquet file: its content is {_NAMES[kind]}.")
    kind, problem = _content_kind(text, complete)
    if claimed in ("json", "jsonl") and kind == "csv":
        first = text.lstrip().split("\n", 1)[0][:60]
        raise ContentMismatch(f"{named} but its content is not JSON (it starts with {first!r}; CSV?).")
    if claimed == "csv" and kind in ("json", "jsonl"):
        raise ContentMismatch(f"{named} but its content is {_NAMES[kind]}.")
    if problem:
        raise ContentMismatch(f"{named} but {problem}.")
    if kind == "csv":
        _check_csv(text, complete, ext if claimed == "csv" else ".csv")
    return kind
