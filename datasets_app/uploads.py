"""Upload plumbing: a streaming size cap and the checks an uploaded file passes before it is stored."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from rest_framework.exceptions import APIException

from finetune.exceptions import ServiceError
from finetune.formatting import human_bytes

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

    def handle_raw_input(self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: Any = None) -> None:
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


def _first_line_too_long(path: str, compressed: bool, limit: int) -> bool:
    opener = gzip.open if compressed else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        read = 0
        while read <= limit:
            chunk = fh.read(min(1 << 20, limit + 1 - read))
            if not chunk:
                return False
            if b"\n" in chunk:
                return False
            read += len(chunk)
        return True


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
                    "upload again.", field="file") from None
    elif kind == "json" and complete:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise ServiceError(f"{filename} line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}).",
                               field="file") from None


def check_uploaded_file(path: str, filename: str) -> CheckedFile:
    """Check one uploaded file: a known type, not empty, content matching its name, lines of sane length."""
    from datasets_app.validation import ContentMismatch, sniff_content

    kind, compressed = claimed_kind(filename)
    size = Path(path).stat().st_size
    if size == 0:
        raise ServiceError(f"{filename} is empty: there is nothing to train on.", field="file")
    if kind in ("jsonl", "csv"):
        limit = settings.DATASET_MAX_LINE_BYTES
        if _first_line_too_long(path, compressed, limit):
            raise ServiceError(
                f"{filename}: line 1 is longer than {human_bytes(limit)}. Each JSON Lines/CSV row must be on its "
                "own line; check the file is not a single giant line.",
                field="file",
            )
    try:
        real = sniff_content(path, filename, max_decompressed=settings.DATASET_MAX_DECOMPRESSED_BYTES)
    except ContentMismatch as exc:
        raise ServiceError(f"{filename}: {exc}", field="file") from None
    if real != kind and not (kind == "json" and real == "jsonl"):
        raise ServiceError(f"{filename}: the file is named .{kind} but its content is {real}.", field="file")
    if real in ("jsonl", "json"):
        _check_json_head(path, compressed, real, filename)
    return CheckedFile(path=path, original_filename=filename, kind=real, compressed=compressed, size_bytes=size,
                       sha256=sha256_of(path))
