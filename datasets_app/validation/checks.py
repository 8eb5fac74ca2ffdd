"""The row checks of the validation pass: columns, row errors, duplicates, PII and text quality, each counted with the
first few places (file, line) where it was seen. ``RowChecks.examples()`` yields the valid rows' canonical examples
(for token counting) while it checks every row."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from typing import Any

from training.engine.data import is_preference, is_tool_format
from training.engine.data.tool_formats import tool_names

from .pii import KINDS, scan
from .rows import ProgressEstimator, Row, RowStream
from .stats import StatsAccumulator, parts_of
from .text import has_control_chars, has_mojibake, normalized_key

SHORT_RESPONSE_CHARS = 5
"""A trained answer (assistant turns / text / chosen) shorter than this, once stripped, is "very short"."""
LONG_ROW_CHARS = 20_000
"""A row whose text is longer than this many characters is "very long"."""
MAX_LISTED_ERRORS = 100
MAX_EXAMPLE_LINES = 20
MAX_COLUMNS = 200
QUALITY_KINDS = ("empty", "very_short", "very_long", "control_chars", "broken_encoding", "no_assistant_turn")

Place = tuple[str, int]
"""(file, line) of a row."""


class Refs:
    """A count plus the first few (file, line) places where something was seen."""

    __slots__ = ("count", "places")

    def __init__(self) -> None:
        self.count = 0
        self.places: list[Place] = []

    def add(self, file: str, line: int) -> None:
        self.count += 1
        if len(self.places) < MAX_EXAMPLE_LINES:
            self.places.append((file, line))

    def to_dict(self, multi_file: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "lines": [line for _, line in self.places]}
        if multi_file:
            out["files"] = [f for f, _ in self.places]
        return out


class RowChecks:
    """State of one validation pass: what every check found, and the place of every valid row (in order, so a token
    count can be traced back to its row)."""

    def __init__(self, stream: RowStream, progress: ProgressEstimator) -> None:
        self.stream = stream
        self.progress = progress
        self.rows = 0
        self.rows_valid = 0
        self.records = 0
        self.columns: dict[str, list[int]] = {}  # column -> [rows that have it, rows where it is blank]
        self.errors: list[dict[str, Any]] = []
        self.row_errors = 0
        self.exact = Refs()
        self.normalized = Refs()
        self.exact_pairs: list[tuple[Place, Place]] = []
        self.normalized_pairs: list[tuple[Place, Place]] = []
        self.pii = {kind: Refs() for kind in KINDS}
        self.quality = {kind: Refs() for kind in QUALITY_KINDS}
        self.stats = StatsAccumulator()
        self.valid_files = array("H")  # index into file_names, per valid row
        self.valid_lines = array("q")
        self.file_names: list[str] = []
        self._file_ids: dict[str, int] = {}
        self._exact_seen: dict[int, int] = {}  # content hash -> index of its first valid row
        self._norm_seen: dict[int, int] = {}
        self._preference: bool | None = None
        self.tool_rows = 0  # rows with tool calls or tool results
        self.tool_calls = 0
        self.tool_results = 0
        self.tool_unknown = Refs()  # rows calling a tool their tools list does not name

    def examples(self) -> Iterator[Mapping[str, Any]]:
        """Check every row; yield the canonical examples (in order) for token counting."""
        stream = self.stream
        n = 0
        for row in stream:
            n += 1
            if n % 2000 == 0:
                self.progress.update(stream.file_index, row.line, scale=0.97)
            if row.record is not None:
                self._check_record(row.record)
            example = row.example
            if example is None:
                if row.error is not None:
                    self._record_error(row)
                continue
            self._check_example(row.file, row.line, example)
            yield example
        self.rows = n
        self.rows_valid = len(self.valid_lines)

    def place(self, index: int) -> Place:
        """(file, line) of the valid row number ``index``."""
        return self.file_names[self.valid_files[index]], self.valid_lines[index]

    def _check_record(self, record: dict[str, Any]) -> None:
        """Column presence and blanks; preference statistics need the record itself."""
        self.records += 1
        columns = self.columns
        for key, value in record.items():
            col = columns.get(key)
            if col is None:
                if len(columns) >= MAX_COLUMNS:
                    continue
                col = columns[key] = [0, 0]
            col[0] += 1
            if value is None or value == "" or (type(value) is str and value.isspace()) or value == []:
                col[1] += 1
        if self._preference is None and self.stream.format is not None:
            self._preference = is_preference(self.stream.format)
        if self._preference:
            self.stats.add_record(record)

    def _record_error(self, row: Row) -> None:
        self.row_errors += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"file": row.file, "line": row.line, "message": row.error})
        record = row.record
        if record is not None and all(
            v is None or (isinstance(v, str) and (not v or v.isspace())) or v == [] for v in record.values()
        ):
            self.quality["empty"].add(row.file, row.line)
        if row.error and "no assistant turn" in row.error:
            self.quality["no_assistant_turn"].add(row.file, row.line)

    def _check_example(self, file: str, line: int, example: Mapping[str, Any]) -> None:
        """Statistics, duplicates, PII and text quality of a valid row, then remember where it is."""
        parts = parts_of(example)
        texts = parts.texts
        text = texts[0] if len(texts) == 1 else "\n".join(texts)
        self.stats.add(parts, len(text) - len(texts) + 1 if texts else 0)
        data = text.encode()
        lower = data.lower() if len(data) == len(text) else text.lower().encode()
        self._check_duplicates(file, line, hash((parts.roles, tuple(texts))), parts.roles, text, lower)
        found = scan(data, lower if len(lower) == len(data) else None)
        if found:
            for kind in {k for k, _, _ in found}:
                self.pii[kind].add(file, line)
        self._check_quality(file, line, parts.response, text, data)
        if self.stream.format is not None and is_tool_format(self.stream.format):
            self._check_tools(file, line, example)
        fid = self._file_ids.get(file)
        if fid is None:
            fid = self._file_ids[file] = len(self.file_names)
            self.file_names.append(file)
        self.valid_files.append(fid)
        self.valid_lines.append(line)

    def _check_duplicates(
        self, file: str, line: int, key: int, roles: tuple[str, ...], text: str, lower: bytes
    ) -> None:
        """Exact content first; rows that are not exact copies are compared after normalisation."""
        index = len(self.valid_lines)
        first = self._exact_seen.get(key)
        if first is not None:
            self.exact.add(file, line)
            if len(self.exact_pairs) < MAX_EXAMPLE_LINES:
                self.exact_pairs.append((self.place(first), (file, line)))
            return
        self._exact_seen[key] = index
        nkey = hash((roles, normalized_key(text, lower)))
        first = self._norm_seen.get(nkey)
        if first is not None:
            self.normalized.add(file, line)
            if len(self.normalized_pairs) < MAX_EXAMPLE_LINES:
                self.normalized_pairs.append((self.place(first), (file, line)))
        else:
            self._norm_seen[nkey] = index

    def _check_tools(self, file: str, line: int, example: Mapping[str, Any]) -> None:
        """Count tool calls and results; remember rows whose calls name a tool missing from their tools list (the
        conversion already refused bad arguments and results that follow no call)."""
        calls = [c for m in example["messages"] for c in m.get("tool_calls") or ()]
        results = sum(1 for m in example["messages"] if m["role"] == "tool")
        if not calls and not results:
            return
        self.tool_rows += 1
        self.tool_calls += len(calls)
        self.tool_results += results
        names = tool_names(example.get("tools") or ())
        if any(c["function"]["name"] not in names for c in calls):
            self.tool_unknown.add(file, line)

    def _check_quality(self, file: str, line: int, response: list[str], text: str, data: bytes) -> None:
        quality = self.quality
        if sum(map(len, response)) <= 64:
            stripped = sum(len(r.strip()) for r in response)
            if stripped == 0:
                quality["empty"].add(file, line)
            elif stripped < SHORT_RESPONSE_CHARS:
                quality["very_short"].add(file, line)
        if len(text) > LONG_ROW_CHARS:
            quality["very_long"].add(file, line)
        if has_control_chars(text, data):
            quality["control_chars"].add(file, line)
        if has_mojibake(text, data):
            quality["broken_encoding"].add(file, line)
