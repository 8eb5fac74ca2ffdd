"""Tabular dataset readers: CSV/TSV (delimiter sniffed from the header) and Parquet (gzipped Parquet is decompressed to
a temporary file first, within the size cap)."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from training.engine.errors import DataError

from .fileio import (
    BOM,
    CHUNK,
    OnBadLine,
    bounded_lines,
    human_size,
    line_too_long_message,
    not_utf8,
    open_binary,
    suffixes,
)

logger = logging.getLogger(__name__)


# --- CSV ----------------------------------------------------------------------------------------------------------


def _decoded_lines(fh: IO[bytes], name: str, max_line_bytes: int | None) -> Iterator[str]:
    for lineno, raw in bounded_lines(fh, max_line_bytes):
        if raw is None:  # a CSV record may span lines: reading cannot resume in step, so it stops here
            raise DataError(f"{name} line {lineno}: {line_too_long_message(max_line_bytes or 0)}")
        if lineno == 1 and raw.startswith(BOM):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise not_utf8(name, lineno, exc, raw) from None


def _delimiter(header: str, name: str) -> str:
    inner, _ = suffixes(name)
    if inner == ".tsv":
        return "\t"
    counts = {d: header.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def iter_csv(
    path: str, name: str, bad: OnBadLine, *, gz: bool, max_bytes: int, max_line_bytes: int | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    if csv.field_size_limit() < 2**31 - 1:
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long documents are normal in TEXT datasets
    with open_binary(path, name, gz=gz, max_bytes=max_bytes) as fh:
        lines = _decoded_lines(fh, name, max_line_bytes)
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


def _decoded_too_much(name: str, max_bytes: int) -> DataError:
    return DataError(
        f"{name}: decompresses to more than {human_size(max_bytes)} (max_bytes); refusing to read further "
        "(a compression bomb, or raise max_bytes if the data is genuinely that large)."
    )


def iter_parquet(path: str, name: str, *, gz: bool, max_bytes: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a Parquet file; the data its pages decompress to is counted (the footer's figure first, then every
    decoded batch) against ``max_bytes``, like the content of a gzip file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp: str | None = None
    try:
        if gz:  # Parquet needs random access: decompress (within max_bytes) to a temporary file first
            with open_binary(path, name, gz=True, max_bytes=max_bytes) as src:
                fd, tmp = tempfile.mkstemp(suffix=".parquet", prefix="finetune-")
                with os.fdopen(fd, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
        try:
            pf = pq.ParquetFile(tmp or path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{name}: not a valid Parquet file ({exc}).") from None
        meta = pf.metadata
        if sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) > max_bytes:
            raise _decoded_too_much(name, max_bytes)
        row = decoded = 0
        try:
            for batch in pf.iter_batches(batch_size=2048):
                decoded += batch.nbytes
                if decoded > max_bytes:
                    raise _decoded_too_much(name, max_bytes)
                for record in batch.to_pylist():
                    row += 1
                    yield row, record
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{name} row {row + 1}: cannot read the Parquet data ({exc}).") from None
    finally:
        if tmp:
            os.unlink(tmp)
