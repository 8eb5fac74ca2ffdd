"""The reading limits in the validation library: every line is bounded while streaming (a huge line after valid ones
is an error naming it, and the lines after it are still read), and gzip content is counted, never trusted from the
ISIZE trailer."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from datasets_app.validation import ContentMismatch, preview, read_limits, sniff_content, statistics, validate_files

KIB = 1024
MIB = 1024 * KIB


def _rows(n: int) -> list[str]:
    return [json.dumps({"instruction": f"question {i}", "output": f"answer {i}"}) for i in range(1, n + 1)]


def _huge_line_file(tmp_path):
    lines = _rows(4)
    lines.insert(2, json.dumps({"instruction": "x" * 64 * KIB, "output": "y"}))  # line 3 of 5
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def liar_gzip(size: int) -> bytes:
    """A valid gzip of about ``size`` bytes of JSON Lines (barely compressible) whose trailer claims 1 byte: the file
    is two gzip members, and the ISIZE field at the end is the last member's (the same lie a file past 4 GiB tells,
    ISIZE being modulo 2**32)."""
    lines, total = [], 0
    while total < size:
        line = json.dumps({"text": os.urandom(256).hex()})
        lines.append(line)
        total += len(line) + 1
    packed = gzip.compress(("\n".join(lines) + "\n").encode()) + gzip.compress(b"\n")
    assert int.from_bytes(packed[-4:], "little") == 1
    return packed


def _liar_gzip(tmp_path, size: int) -> str:
    path = tmp_path / "liar.jsonl.gz"
    path.write_bytes(liar_gzip(size))
    return str(path)


def test_validate_files_names_a_huge_line_after_valid_ones_and_reads_on(tmp_path):
    path = _huge_line_file(tmp_path)
    report = validate_files([path], max_line_bytes=4 * KIB)
    assert report["verdict"] == "invalid"
    (error,) = report["errors"]
    assert error["line"] == 3 and "longer than 4.0 KiB" in error["message"]
    assert report["rows"] == 5 and report["rows_valid"] == 4  # the lines after it were read


def test_read_limits_apply_to_preview_and_statistics(tmp_path):
    path = _huge_line_file(tmp_path)
    with read_limits(max_bytes=MIB, max_line_bytes=4 * KIB):
        page = preview([path], limit=10)
        stats = statistics([path])
    assert page["count"] == 4 and [r["line"] for r in page["results"]] == [1, 2, 4, 5]
    assert stats["rows"] == 4


def test_the_default_line_limit_is_16_mib(tmp_path):
    path = _huge_line_file(tmp_path)
    assert validate_files([path])["rows_valid"] == 5


def test_sniff_counts_gzip_content_instead_of_trusting_isize(tmp_path):
    path = _liar_gzip(tmp_path, 2 * MIB)
    sniff_content(path, "liar.jsonl.gz", max_decompressed=4 * MIB)  # within the limit: fine
    with pytest.raises(ContentMismatch, match="more than 1.0 MiB"):
        sniff_content(path, "liar.jsonl.gz", max_decompressed=1 * MIB)


def test_validate_files_counts_gzip_content_past_the_limit(tmp_path):
    path = _liar_gzip(tmp_path, 2 * MIB)
    report = validate_files([path], max_bytes=MIB)
    assert report["verdict"] == "invalid"
    assert any("decompresses to more than 1.0 MiB" in e["message"] for e in report["errors"]), report["errors"]
