"""Upload plumbing: a streaming size cap and the checks an uploaded file passes before it is stored."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from rest_framework.exceptions import APIException

from finetune.exceptions import ServiceError
from finetune.formatting import human_bytes

GZIP_SCAN_BYTES = 64 * 1024**2
"""How much of a gzipped upload the web process decompresses (content counted, lines checked); the processing task
reads the rest within the same limits."""

ACCEPTED_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "The upload is too large."
    default_code = "payload_too_large"


class SizeLimitUploadHandler(FileUploadHandler):
    """Stops reading a request body as soon as it passes DATASET_MAX_UPLOAD_BYTES (also for chunked uploads)."""

    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.total = 0

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: Any = None
    ) -> None:
        limit = settings.DATASET_MAX_UPLOAD_BYTES
        if content_length and content_length > limit + 64 * 1024:
            raise PayloadTooLarge(too_large_message(content_length))
        return None

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.total += len(raw_data)
        if self.total > settings.DATASET_MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(too_large_message(self.total, partial=True))
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def too_large_message(size: int, *, partial: bool = False) -> str:
    limit = settings.DATASET_MAX_UPLOAD_BYTES
    what = "more than" if partial else ""
    return (
        f"The upload is {what} {human_bytes(size)}".replace("  ", " ")
        + f"; the largest upload allowed is {human_bytes(limit)}. Split the file or compress it with gzip."
    )


@dataclass(frozen=True)
class CheckedFile:
    """An uploaded file that passed the checks, ready to be stored."""

    path: str
    original_filename: str
    kind: str
    compressed: bool
    size_bytes: int
    sha256: str


def claimed_kind(filename: str) -> tuple[str, bool]:
    """The type a file name claims: ('jsonl'|'json'|'csv'|'parquet', gzipped?)."""
    name = filename.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    kind = ACCEPTED_SUFFIXES.get(Path(name).suffix)
    if kind is None:
        accepted = ", ".join(sorted(ACCEPTED_SUFFIXES)) + " (optionally .gz)"
        raise ServiceError(f"{filename}: unsupported file type. Accepted: {accepted}.", field="file")
    return kind, compressed


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _LineCheck:
    """Follows the lines of a byte stream fed in chunks and raises ``ServiceError`` at the first one longer than
    ``limit`` bytes (newline aside), naming it."""

    def __init__(self, filename: str, limit: int) -> None:
        self.filename, self.limit = filename, limit
        self.line = 1  # the line the next byte belongs to
        self.current = 0  # bytes of that line seen so far

    def feed(self, data: bytes) -> None:
        first = data.find(b"\n")
        if first < 0:
            self.current += len(data)
            if self.current > self.limit:
                self._refuse(self.line)
            return
        if self.current + first > self.limit:
            self._refuse(self.line)
        last = data.rfind(b"\n")
        if last - first - 1 > self.limit:  # the whole lines of the chunk may hold a long one: look at each
            for offset, part in enumerate(data[first + 1 : last].split(b"\n"), 1):
                if len(part) > self.limit:
                    self._refuse(self.line + offset)
        self.line += data.count(b"\n")
        self.current = len(data) - last - 1
        if self.current > self.limit:
            self._refuse(self.line)

    def _refuse(self, line: int) -> None:
        raise ServiceError(
            f"{self.filename}: line {line} is longer than {human_bytes(self.limit)}. Each JSON Lines/CSV row must be "
            "on its own line; check the file is not a single giant line.",
            field="file",
        )


def _too_much_content(filename: str) -> ServiceError:
    limit = settings.DATASET_MAX_DECOMPRESSED_BYTES
    return ServiceError(
        f"{filename}: the file decompresses to more than {human_bytes(limit)}, the most a dataset "
        "file may hold once decompressed. Split it into smaller files.",
        field="file",
    )


def _scan(path: str, filename: str, *, compressed: bool, check_lines: bool) -> str:
    """One pass over an uploaded file, returning its sha256: every line's length is checked (JSON Lines, CSV), and a
    gzip file's content is counted as it is decompressed, never taken from its trailer (at most ``GZIP_SCAN_BYTES``
    of it here)."""
    from datasets_app.validation.gunzip import GzipCounter

    h = hashlib.sha256()
    lines = _LineCheck(filename, settings.DATASET_MAX_LINE_BYTES) if check_lines else None
    gunzip = GzipCounter() if compressed else None
    budget = min(GZIP_SCAN_BYTES, settings.DATASET_MAX_DECOMPRESSED_BYTES + 1)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            if gunzip is None:
                if lines is not None:
                    lines.feed(chunk)
                continue
            if gunzip.ended or gunzip.total >= budget:
                continue
            try:
                for piece in gunzip.feed(chunk):
                    if gunzip.total > settings.DATASET_MAX_DECOMPRESSED_BYTES:
                        raise _too_much_content(filename)
                    if lines is not None:  # the lines within the budget
                        lines.feed(piece[: max(0, budget - (gunzip.total - len(piece)))])
                    if gunzip.total >= budget:
                        break
            except zlib.error as exc:
                raise ServiceError(f"{filename}: the gzip data is corrupt ({exc}).", field="file") from None
    return h.hexdigest()


def _check_parquet_size(path: str, filename: str) -> None:
    """Refuse a Parquet file whose pages decompress past the limit, as its footer tells (the processing task counts
    the data itself as it decodes it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        raise ServiceError(f"{filename}: not a valid Parquet file ({exc}).", field="file") from None
    if (
        sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        > settings.DATASET_MAX_DECOMPRESSED_BYTES
    ):
        raise _too_much_content(filename)


JSON_CHECK_BYTES = 4 * 1024**2


def _check_json_head(path: str, compressed: bool, kind: str, filename: str) -> None:
    """Parse the first megabytes at upload so a broken file is refused at once, naming the line; later problems
    are reported row by row (with line numbers) by the validation that follows."""
    import json

    opener = gzip.open if compressed else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        head = fh.read(JSON_CHECK_BYTES + 1)
    complete = len(head) <= JSON_CHECK_BYTES
    text = head[:JSON_CHECK_BYTES].decode("utf-8", errors="replace")
    if kind == "jsonl":
        lines = text.split("\n")
        if not complete:
            lines = lines[:-1]
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as exc:
                raise ServiceError(
                    f"{filename} line {number}: invalid JSON ({exc.msg} at column {exc.colno}). Fix that line and "
                    "upload again.",
                    field="file",
                ) from None
    elif kind == "json" and complete:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise ServiceError(
                f"{filename} line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}).", field="file"
            ) from None


def check_uploaded_file(path: str, filename: str) -> CheckedFile:
    """Check one uploaded file: a known type, not empty, content matching its name, every line of sane length, and
    content within the decompressed-size limit (gzip counted while decompressing, Parquet from its footer)."""
    from datasets_app.validation import ContentMismatch, sniff_content

    kind, compressed = claimed_kind(filename)
    size = Path(path).stat().st_size
    if size == 0:
        raise ServiceError(f"{filename} is empty: there is nothing to train on.", field="file")
    sha256 = _scan(path, filename, compressed=compressed, check_lines=kind in ("jsonl", "csv"))
    try:
        real = sniff_content(path, filename, max_decompressed=settings.DATASET_MAX_DECOMPRESSED_BYTES)
    except ContentMismatch as exc:
        raise ServiceError(f"{filename}: {exc}", field="file") from None
    if real != kind and not (kind == "json" and real == "jsonl"):
        raise ServiceError(f"{filename}: the file is named .{kind} but its content is {real}.", field="file")
    if real in ("jsonl", "json"):
        _check_json_head(path, compressed, real, filename)
    if real == "parquet" and not compressed:
        _check_parquet_size(path, filename)
    return CheckedFile(
        path=path, original_filename=filename, kind=real, compressed=compressed, size_bytes=size, sha256=sha256
    )
