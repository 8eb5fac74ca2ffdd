"""Reading limits of the engine's dataset readers: every line (and JSON record) is bounded while streaming, and the
decompressed size is counted as it comes out, Parquet's own compressed pages included."""

from __future__ import annotations

import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.engine.data import iter_records
from training.engine.errors import DataError

KIB = 1024


def _line(i: int) -> str:
    return json.dumps({"instruction": f"q{i}", "output": f"a{i}"})


def _huge_third_line(path, size: int = 64 * KIB) -> None:
    huge = json.dumps({"instruction": "x" * size, "output": "y"})
    path.write_text("\n".join([_line(1), _line(2), huge, _line(4)]) + "\n")


def test_a_huge_jsonl_line_after_valid_ones_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "data.jsonl"
    _huge_third_line(path)
    with pytest.raises(DataError, match=r"data\.jsonl line 3: .*longer than 4\.0 KiB"):
        list(iter_records(path, max_line_bytes=4 * KIB))


def test_with_on_bad_line_the_huge_line_is_skipped_and_reading_goes_on(tmp_path):
    path = tmp_path / "data.jsonl"
    _huge_third_line(path)
    bad: list[tuple[int, str]] = []
    rows = list(iter_records(path, max_line_bytes=4 * KIB, on_bad_line=lambda n, m: bad.append((n, m))))
    assert [n for n, _ in rows] == [1, 2, 4]
    assert [n for n, _ in bad] == [3] and "longer than" in bad[0][1]


def test_a_line_of_exactly_the_limit_passes(tmp_path):
    path = tmp_path / "data.jsonl"
    first = _line(1)
    path.write_text(first + "\n" + _line(2))
    assert len(list(iter_records(path, max_line_bytes=len(first.encode())))) == 2
    with pytest.raises(DataError, match="line 1"):
        list(iter_records(path, max_line_bytes=len(first.encode()) - 1))


def test_gzipped_jsonl_lines_are_bounded_too(tmp_path):
    path = tmp_path / "data.jsonl.gz"
    lines = [_line(1), json.dumps({"instruction": "z" * 50 * KIB, "output": "y"})]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(DataError, match=r"line 2: .*longer than"):
        list(iter_records(path, max_line_bytes=8 * KIB))


def test_a_huge_csv_line_after_the_header_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("instruction,output\nq1,a1\n" + "x" * 20 * KIB + ",a2\nq3,a3\n")
    with pytest.raises(DataError, match=r"data\.csv line 3: .*longer than"):
        list(iter_records(path, max_line_bytes=4 * KIB))


def test_a_huge_record_of_a_json_array_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "data.json"
    records = [{"instruction": "q1", "output": "a1"}, {"instruction": "x" * 3 * 1024 * KIB, "output": "a2"}]
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    with pytest.raises(DataError, match=r"data\.json line 3: .*longer than"):
        list(iter_records(path, max_line_bytes=64 * KIB))
    assert len(list(iter_records(path))) == 2  # no limit given: unchanged


def test_gzip_whose_isize_lies_is_counted_while_decompressing(tmp_path):
    content = ("\n".join(json.dumps({"text": os.urandom(512).hex()}) for _ in range(2000)) + "\n").encode()
    packed = gzip.compress(content) + gzip.compress(b"\n")  # two members: the trailer's ISIZE says 1 byte
    path = tmp_path / "liar.jsonl.gz"
    path.write_bytes(packed)
    with pytest.raises(DataError, match="decompresses to more than"):
        list(iter_records(path, max_bytes=256 * KIB))


def _compressible_parquet(path, rows: int = 2000, width: int = 2000) -> None:
    table = pa.table({"text": ["x" * width] * rows})
    pq.write_table(table, path, compression="zstd", use_dictionary=False)


def test_a_parquet_file_decoding_past_the_limit_is_refused(tmp_path):
    path = tmp_path / "bomb.parquet"
    _compressible_parquet(path)  # ~4 MB of text in a file of a few KB
    assert path.stat().st_size < 256 * KIB
    with pytest.raises(DataError, match=r"bomb\.parquet: .*more than 1\.0 MiB"):
        list(iter_records(path, max_bytes=1024 * KIB))
    assert sum(1 for _ in iter_records(path)) == 2000


def test_a_gzipped_parquet_file_counts_against_the_same_limit(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": [os.urandom(256).hex() for _ in range(4000)]}), plain, compression="none")
    path = tmp_path / "data.parquet.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(DataError, match="more than"):
        list(iter_records(path, max_bytes=512 * KIB))
