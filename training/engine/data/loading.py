"""Load dataset files into canonical examples, collecting per-row problems instead of failing on the first one."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from training.engine.errors import DataError

from .formats import (
    DatasetFormat,
    apply_column_mapping,
    detect_format,
    is_preference,
    is_unpaired_preference,
    parse_format,
    to_canonical,
    validate_column_mapping,
)
from .readers import DEFAULT_MAX_BYTES, display_name, iter_records, record_unit

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROW_ERRORS = 100
_DETECT_SAMPLE = 100


@dataclass(frozen=True, slots=True)
class RowError:
    """One row that could not be converted: file name, line (or Parquet row) number and what is wrong."""

    file: str
    line: int
    message: str
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.file} {self.unit} {self.line}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"file": self.file, "line": self.line, "unit": self.unit, "message": self.message}


@dataclass(frozen=True)
class LoadedData:
    """Canonical examples of one or more files, the problems found, and the input's fingerprint.

    ``row_errors`` holds at most ``max_row_errors`` entries; ``rows_skipped`` counts every row that failed.
    """

    format: DatasetFormat
    examples: list[dict[str, Any]]
    row_errors: list[RowError]
    rows_read: int
    sha256: str
    rows_skipped: int = 0
    files: tuple[str, ...] = field(default=())

    @property
    def is_preference(self) -> bool:
        """True when the examples are chosen/rejected pairs."""
        return is_preference(self.format)

    @property
    def is_unpaired_preference(self) -> bool:
        """True when the examples are KTO rows (one completion each, labelled desirable or not)."""
        return is_unpaired_preference(self.format)


def sha256_files(paths: Sequence[str | os.PathLike[str]]) -> str:
    """SHA-256 of the files' bytes, concatenated in order."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise DataError(f"{display_name(path)} cannot be read: {exc.strerror or exc}.") from exc
    return digest.hexdigest()


def _appender(target: list[tuple[int, str]]) -> Callable[[int, str], None]:
    def append(line: int, message: str) -> None:
        target.append((line, message))

    return append


def _rows(
    paths: Sequence[str], mapping: Mapping[str, str], max_bytes: int
) -> Iterator[tuple[str, str, int, dict[str, Any] | DataError]]:
    """Yield (file, unit, line, mapped row or the error) over all files in order; lines that cannot be read on
    their own (bad JSON Lines line, ragged CSV row) come as errors too, in file order."""
    for path in paths:
        name, unit = display_name(path), record_unit(path)
        bad: list[tuple[int, str]] = []
        for line, row in iter_records(path, max_bytes=max_bytes, on_bad_line=_appender(bad)):
            while bad:
                n, message = bad.pop(0)
                yield name, unit, n, DataError(message)
            if mapping:
                try:
                    yield name, unit, line, apply_column_mapping(row, mapping)
                except DataError as exc:
                    yield name, unit, line, exc
            else:
                yield name, unit, line, row
        for n, message in bad:
            yield name, unit, n, DataError(message)


def load_examples(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    fmt: DatasetFormat | str | None = None,
    column_mapping: Mapping[str, str] | None = None,
    limit: int | None = None,
    max_row_errors: int = DEFAULT_MAX_ROW_ERRORS,
    system_prompt: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedData:
    """Read, map, detect and convert dataset files into canonical examples.

    Rows that fail (a JSON Lines line that is not valid JSON, a ragged CSV row, a missing mapped path, a conversion
    problem) are skipped and reported as ``RowError`` (file, line, message); damage that stops reading a file (a
    broken JSON array, a corrupt gzip) raises ``DataError``, and so does a load where no row converts (showing the
    first problems). ``limit`` stops after that many examples (for previews).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    path_list = [os.fspath(p) for p in paths]
    if not path_list:
        raise DataError("No dataset files were given.")
    for p in path_list:
        if not os.path.exists(p):
            raise DataError(f"{display_name(p)} does not exist.")
    wanted = parse_format(fmt)
    mapping = validate_column_mapping(column_mapping)
    if limit is not None and limit <= 0:
        raise DataError("limit must be a positive number of examples.")
    digest = sha256_files(path_list)

    stream = _rows(path_list, mapping, max_bytes)
    head = list(itertools.islice(stream, _DETECT_SAMPLE))
    if wanted is None:
        sample = [row for _, _, _, row in head if isinstance(row, dict)]
        if not sample:
            shown = "; ".join(f"{f} {u} {n}: {e}" for f, u, n, e in head[:5])
            raise DataError(f"None of the first {len(head)} rows could be read. First problems: {shown}.")
        wanted = detect_format(sample)
        logger.info("detected dataset format %s for %s", wanted, ", ".join(map(display_name, path_list)))

    examples: list[dict[str, Any]] = []
    errors: list[RowError] = []
    skipped = 0
    rows_read = 0
    for name, unit, line, row in itertools.chain(head, stream):
        rows_read += 1
        try:
            if isinstance(row, DataError):
                raise row
            examples.append(to_canonical(row, wanted, system_prompt=system_prompt))
        except DataError as exc:
            skipped += 1
            if len(errors) < max_row_errors:
                errors.append(RowError(name, line, str(exc), unit))
            continue
        if limit is not None and len(examples) >= limit:
            break

    if not examples:
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {skipped - 5} more)" if skipped > 5 else ""
        raise DataError(
            f"No row could be converted as {wanted.value} ({rows_read} read). First problems: {shown}{more}. "
            "Check the format and the column mapping."
        )
    if skipped:
        logger.warning("skipped %d of %d rows that could not be converted as %s", skipped, rows_read, wanted)
    return LoadedData(
        format=wanted,
        examples=examples,
        row_errors=errors,
        rows_read=rows_read,
        sha256=digest,
        rows_skipped=skipped,
        files=tuple(display_name(p) for p in path_list),
    )
