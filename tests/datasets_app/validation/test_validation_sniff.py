"""sniff_content: the content must be what the file name says; honest files pass."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets_app.validation import ContentMismatch, sniff_content
from tests.datasets_dir import DATASETS

SHARED = DATASETS


def parquet_file(path: Path) -> Path:
    pq.write_table(pa.table({"instruction": ["a", "b"], "output": ["c", "d"]}), path)
    return path


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("alpaca_en_demo.json", "json"),
        ("sharegpt_conversations.json", "json"),
        ("self_instruct_seed_tasks.jsonl", "jsonl"),
        ("hh_rlhf_harmless_test.jsonl.gz", "jsonl"),
    ],
)
def test_the_shared_files_pass(name, kind):
    assert sniff_content(str(SHARED / name), name) == kind


def test_honest_csv_parquet_and_gzip_pass(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text('instruction,output\n"Say hi, please",Hi\nCount,"1,\n2"\n')
    assert sniff_content(str(csv), "d.csv") == "csv"
    tsv = tmp_path / "d.tsv"
    tsv.write_text("instruction\toutput\nSay hi\tHi\n")
    assert sniff_content(str(tsv), ".tsv") == "csv"
    assert sniff_content(str(parquet_file(tmp_path / "d.parquet")), "d.parquet") == "parquet"
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"text": "hello"}\n{"text": "world"}\n'))
    assert sniff_content(str(gz), "d.jsonl.gz") == "jsonl"
    named_json = tmp_path / "lines.json"
    named_json.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert sniff_content(str(named_json), "lines.json") == "jsonl"  # JSON Lines saved as .json is readable


def test_a_csv_that_is_parquet_is_refused(tmp_path):
    path = parquet_file(tmp_path / "data.csv")
    with pytest.raises(ContentMismatch, match=r"The file is named \.csv but its content is Parquet"):
        sniff_content(str(path), "data.csv")


def test_a_jsonl_that_is_binary_garbage_is_refused(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(ContentMismatch, match=r"named \.jsonl but its content is binary data, not JSON Lines"):
        sniff_content(str(path), "data.jsonl")


def test_a_ragged_csv_is_refused_with_the_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("instruction,input,output\na,b,c\nd,e,f,g\nh,i,j\n")
    with pytest.raises(ContentMismatch, match=r"inconsistent columns: line 3 has 4 fields and the header has 3"):
        sniff_content(str(path), "data.csv")


def test_a_gzip_bomb_is_refused_without_decompressing_it(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    record = json.dumps({"text": "a" * 1000}).encode() + b"\n"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        for _ in range(40_000):  # ~40 MB of content in a file of a few dozen KB
            fh.write(record)
    assert path.stat().st_size < 400_000
    with pytest.raises(ContentMismatch, match="gzip"):
        sniff_content(str(path), "bomb.jsonl.gz", max_decompressed=10 * 1024**2)
    # The same file is fine when the limit allows it.
    assert sniff_content(str(path), "bomb.jsonl.gz", max_decompressed=1024**3) == "jsonl"


def test_gzip_of_zeros_is_a_bomb_even_when_the_trailer_lies(tmp_path):
    path = tmp_path / "zeros.jsonl.gz"
    data = gzip.compress(b"\0" * (64 * 1024**2), compresslevel=9)
    path.write_bytes(data[:-4] + (1000).to_bytes(4, "little"))  # the size field claims 1000 bytes
    with pytest.raises(ContentMismatch, match="gzip bomb"):
        sniff_content(str(path), "zeros.jsonl.gz", max_decompressed=16 * 1024**2)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "a.jsonl", "The file is empty"),
        (b"name,text\nx,y\n", "a.jsonl", r"named \.jsonl but its content is not JSON"),
        (b'{"text": "a"}\n{"text": "b"}\n', "a.csv", r"named \.csv but its content is JSON Lines"),
        (b'[{"text": "a"}]', "a.parquet", r"named \.parquet but it is not a Parquet file: its content is JSON"),
        (b"\xff\xfe{\x00}\x00", "a.jsonl", "UTF-16"),
        (b'{"text": "caf\xe9"}\n', "a.jsonl", "not UTF-8 text"),
        (b"this is not json\nneither is this\n", "a.json", "not JSON"),
        (b"{not json at all}\n{nor this}\n", "a.jsonl", "first lines are not JSON objects"),
    ],
)
def test_content_that_contradicts_the_name_is_refused(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ContentMismatch, match=message):
        sniff_content(str(path), name)


def test_a_truncated_parquet_file_is_refused(tmp_path):
    path = parquet_file(tmp_path / "d.parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ContentMismatch, match="truncated or corrupt"):
        sniff_content(str(path), "d.parquet")


def test_a_jsonl_with_one_broken_line_passes_sniffing_and_gets_a_line_error_later(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n{"text": \n{"text": "c"}\n')
    assert sniff_content(str(path), "d.jsonl") == "jsonl"


def test_the_library_imports_without_django_or_heavy_libraries():
    import subprocess
    import sys

    code = (
        "import sys, datasets_app.validation; "
        "print(','.join(m for m in ('django', 'transformers', 'torch', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    )
    assert out.stdout.strip() == ""
