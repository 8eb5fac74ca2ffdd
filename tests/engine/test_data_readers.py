"""Dataset file readers: the real shared files, every container format, sniffing, and bad input with clear messages."""

from __future__ import annotations

import csv
import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.datasets_dir import DATASETS  # noqa: E402
from training.engine.data import iter_records, load_examples, record_unit
from training.engine.errors import DataError

ALPACA = DATASETS / "alpaca_en_demo.json"
SHAREGPT = DATASETS / "sharegpt_conversations.json"
SELF_INSTRUCT = DATASETS / "self_instruct_seed_tasks.jsonl"
HH = DATASETS / "hh_rlhf_harmless_test.jsonl.gz"

ROWS = [
    {"instruction": "Say hi", "input": "", "output": "Hi!"},
    {"instruction": "Add", "input": "2+2", "output": "4"},
    {"instruction": "Translate 'chat'", "input": "to English", "output": "cat, or chat"},
]


def _records(path) -> list[dict]:
    return [row for _, row in iter_records(path)]


# --- the real shared files ----------------------------------------------------------------------------------------


def test_it_reads_every_shared_file_with_independently_counted_rows():
    assert len(_records(ALPACA)) == len(json.loads(ALPACA.read_text(encoding="utf-8")))
    assert len(_records(SHAREGPT)) == len(json.loads(SHAREGPT.read_text(encoding="utf-8")))
    with SELF_INSTRUCT.open(encoding="utf-8") as fh:
        assert len(_records(SELF_INSTRUCT)) == sum(1 for line in fh if line.strip())
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        expected = [json.loads(line) for line in fh if line.strip()]
    got = _records(HH)
    assert got == expected


def test_it_streams_a_json_array_with_the_line_where_each_record_starts():
    records = list(iter_records(ALPACA))
    lines = ALPACA.read_text(encoding="utf-8").split("\n")
    first_line, first = records[0]
    assert lines[first_line - 1].strip() == "{"
    assert first == json.loads(ALPACA.read_text(encoding="utf-8"))[0]
    last_line, _ = records[-1]
    assert lines[last_line - 1].strip() == "{" and last_line > first_line


def test_json_lines_numbers_are_file_lines_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n   \n" + json.dumps(ROWS[2]))
    assert [n for n, _ in iter_records(path)] == [1, 3, 5]


# --- containers and sniffing --------------------------------------------------------------------------------------


def test_it_reads_gzipped_files_by_magic_bytes_even_without_gz_suffix(tmp_path):
    path = tmp_path / "data.jsonl"  # gzipped content behind a plain name
    path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in ROWS).encode()))
    assert _records(path) == ROWS
    gz_array = tmp_path / "array.json.gz"
    gz_array.write_bytes(gzip.compress(json.dumps(ROWS, indent=2).encode()))
    assert _records(gz_array) == ROWS


def test_it_accepts_json_lines_saved_as_json_and_a_top_level_object_holding_one_list(tmp_path):
    lines = tmp_path / "lines.json"
    lines.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert _records(lines) == ROWS
    container = tmp_path / "container.json"
    container.write_text(json.dumps({"version": 2, "data": ROWS, "meta": {"n": 3}}, indent=1))
    assert _records(container) == ROWS
    minified = tmp_path / "minified.json"
    minified.write_text(json.dumps({"data": ROWS}))
    assert _records(minified) == ROWS


def test_a_lone_object_without_a_list_of_records_is_one_record(tmp_path):
    path = tmp_path / "one.json"
    record = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    path.write_text(json.dumps(record, indent=2))
    assert _records(path) == [record]


def test_it_reads_pretty_printed_concatenated_objects(tmp_path):
    path = tmp_path / "stream.json"
    path.write_text("\n".join(json.dumps(r, indent=2) for r in ROWS))
    assert _records(path) == ROWS


def test_a_parquet_named_file_holding_json_is_read_by_its_content(tmp_path):
    # Decision: the content decides (sniffed), the suffix is only a hint; a warning is logged.
    path = tmp_path / "really_json.parquet"
    path.write_text(json.dumps(ROWS))
    assert _records(path) == ROWS


def test_a_json_named_file_holding_parquet_is_read_by_its_content(tmp_path):
    path = tmp_path / "really_parquet.json"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert _records(path) == ROWS
    assert record_unit(path) == "row"


def test_csv_round_trip(tmp_path):
    path = tmp_path / "data.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(ROWS)
        writer.writerow({"instruction": "Multi\nline, quoted", "input": "", "output": 'say "yes"'})
    records = list(iter_records(path))
    assert [r for _, r in records[:3]] == ROWS
    assert records[3] == (5, {"instruction": "Multi\nline, quoted", "input": "", "output": 'say "yes"'})
    loaded = load_examples([path])
    assert loaded.format == "alpaca" and len(loaded.examples) == 4


def test_tsv_and_semicolon_csv_are_read(tmp_path):
    tsv = tmp_path / "data.tsv"
    tsv.write_text("prompt\tcompletion\nHello, you\tHi, there\n")
    assert _records(tsv) == [{"prompt": "Hello, you", "completion": "Hi, there"}]
    semi = tmp_path / "semi.csv"
    semi.write_text("text;source\nA sentence, with a comma;web\n")
    assert _records(semi) == [{"text": "A sentence, with a comma", "source": "web"}]


def test_parquet_round_trip_row_group_by_row_group(tmp_path):
    rows = [{"text": f"document {i}", "n": i, "tags": ["a", "b"][: i % 3]} for i in range(2500)]
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=700)
    records = list(iter_records(path))
    assert [r for _, r in records] == rows
    assert [n for n, _ in records[:2]] == [1, 2] and records[-1][0] == 2500
    gz = tmp_path / "data.parquet.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert [r for _, r in iter_records(gz)] == rows


def test_a_giant_single_line_is_read(tmp_path):
    big = "x" * 3_000_000
    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"text": "small"}, {"text": big}, {"text": "after"}]))
    assert [len(r["text"]) for r in _records(path)] == [5, 3_000_000, 5]


def test_a_utf8_bom_is_ignored(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS[0]).encode())
    assert _records(path) == [ROWS[0]]
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbftext\nhello\n")
    assert _records(csv_path) == [{"text": "hello"}]


# --- bad input ------------------------------------------------------------------------------------------------------


def _error(path) -> str:
    with pytest.raises(DataError) as info:
        list(iter_records(path))
    return str(info.value)


def test_it_rejects_an_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert "empty.jsonl is empty" in _error(path)
    blank = tmp_path / "blank.json"
    blank.write_text("  \n\n ")
    assert "blank.json is empty" in _error(blank)
    no_records = tmp_path / "none.json"
    no_records.write_text("[]")
    assert "none.json is empty" in _error(no_records)


def test_broken_json_lines_name_the_line_and_column(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    lines = [json.dumps(ROWS[0])] * 16 + ['{"instruction": "x" "output": "y"}'] + [json.dumps(ROWS[1])]
    path.write_text("\n".join(lines))
    message = _error(path)
    assert message.startswith("alpaca.jsonl line 17: invalid JSON (Expecting ',' delimiter at column 21)")


def test_broken_json_array_names_the_line(tmp_path):
    path = tmp_path / "array.json"
    text = json.dumps(ROWS, indent=2).split("\n")
    text[5] = text[5] + " oops"  # garbage after a value on line 6
    path.write_text("\n".join(text))
    message = _error(path)
    assert "array.json line 6: invalid JSON" in message and "column" in message
    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps(ROWS, indent=2)[:-40])
    assert "truncated.json line" in _error(truncated)


def test_a_non_object_record_is_rejected_with_its_line(tmp_path):
    path = tmp_path / "strings.jsonl"
    path.write_text('{"text": "a"}\n["not", "an", "object"]\n')
    assert "strings.jsonl line 2: expected a JSON object" in _error(path)


def test_ragged_csv_names_the_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("instruction,input,output\na,b,c\nd,e\nf,g,h\n")
    message = _error(path)
    assert "ragged.csv line 3: has 2 fields but the header has 3" in message


def test_binary_garbage_is_rejected(tmp_path):
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(os.urandom(4096) + b"\x00" * 16)
    assert "binary data" in _error(path)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    rows = [json.dumps(ROWS[0]).encode(), json.dumps(ROWS[1]).encode(), '{"text": "café"}'.encode("latin-1")]
    path.write_bytes(b"\n".join(rows))
    assert "latin1.jsonl: line 3 is not valid UTF-8" in _error(path)
    array = tmp_path / "latin1.json"
    array.write_bytes(b'[\n{"text": "ok"},\n{"text": "caf\xe9"}\n]')
    assert "latin1.json: line 3 is not valid UTF-8" in _error(array)
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(b"text\nok\ncaf\xe9\n")
    assert "latin1.csv: line 3 is not valid UTF-8" in _error(csv_path)


def test_a_gzip_bomb_is_stopped_at_max_bytes(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    payload = b'{"text": "' + b"a" * (8 * 1024 * 1024) + b'"}\n'
    path.write_bytes(gzip.compress(payload, compresslevel=9))
    assert path.stat().st_size < 64 * 1024  # small on disk, 8 MiB once decompressed
    with pytest.raises(DataError, match="decompresses to more than 1.0 MiB"):
        list(iter_records(path, max_bytes=1024 * 1024))
    assert len(_records(path)[0]["text"]) == 8 * 1024 * 1024  # the default limit lets it through


def test_corrupt_gzip_and_corrupt_parquet_are_data_errors(tmp_path):
    gz = tmp_path / "cut.jsonl.gz"
    gz.write_bytes(gzip.compress(("\n".join(json.dumps(r) for r in ROWS * 200)).encode())[:200])
    assert "gzip data is corrupt or truncated" in _error(gz)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1" + os.urandom(100) + b"PAR1")
    assert "not a valid Parquet file" in _error(bad)


def test_utf16_files_get_an_actionable_message(tmp_path):
    path = tmp_path / "utf16.json"
    path.write_bytes(json.dumps(ROWS).encode("utf-16"))
    assert "UTF-16" in _error(path)


def test_a_missing_file_and_a_directory_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_examples([tmp_path / "nope.jsonl"])
    assert "is a directory" in _error(tmp_path)


def test_line_numbers_stay_exact_across_read_chunks(tmp_path):
    rows = [{"id": i, "text": "word " * (i % 50) + "\u00e9\u4e2d"} for i in range(15000)]
    text = json.dumps(rows, indent=2, ensure_ascii=False)
    assert len(text.encode()) > 2 * 1024 * 1024  # several 1 MiB reads
    path = tmp_path / "big.json"
    path.write_text(text, encoding="utf-8")
    lines = text.split("\n")
    records = list(iter_records(path))
    assert [r for _, r in records] == rows
    assert all(lines[n - 1] == "  {" for n, _ in records)
    broken_at = len(lines) - 30
    lines[broken_at] += "}"
    path.write_text("\n".join(lines), encoding="utf-8")
    assert f"big.json line {broken_at + 1}: invalid JSON" in _error(path)


def test_plain_prose_is_refused_with_guidance(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Once upon a time there was a model\nthat wanted to learn.\n")
    message = _error(path)
    assert "notes.txt: unrecognised content" in message and '{"text": ...}' in message


def test_on_bad_line_reports_and_continues(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps(ROWS[0]).encode(),
        b'{"broken": ',
        b'"a string"',
        b'{"text": "caf\xe9"}',
        json.dumps(ROWS[1]).encode(),
    ]
    path.write_bytes(b"\n".join(lines))
    problems: list[tuple[int, str]] = []
    assert [n for n, _ in _records_with(path, problems)] == [1, 5]
    assert [n for n, _ in problems] == [2, 3, 4]
    assert problems[0][1].startswith("invalid JSON (Expecting value at column")
    assert "expected a JSON object" in problems[1][1] and problems[2][1].startswith("not valid UTF-8")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n4,5\n")
    problems.clear()
    assert [row for _, row in _records_with(ragged, problems)] == [{"a": "1", "b": "2"}, {"a": "4", "b": "5"}]
    assert problems[0][0] == 3 and "has 1 field but the header has 2" in problems[0][1]


def _records_with(path, problems):
    return list(iter_records(path, on_bad_line=lambda line, message: problems.append((line, message))))


def test_load_examples_skips_bad_lines_as_row_errors(tmp_path):
    path = tmp_path / "cut.jsonl"
    lines = [json.dumps({"text": f"document {i}"}) for i in range(5)]
    path.write_text("\n".join(lines) + '\n{"text": "interrupted downl')  # a download that stopped mid-line
    loaded = load_examples([path])
    assert len(loaded.examples) == 5 and loaded.rows_read == 6 and loaded.rows_skipped == 1
    (error,) = loaded.row_errors
    assert str(error).startswith("cut.jsonl line 6: invalid JSON (Unterminated string starting at column")
