"""validate_files on the real shared datasets and on crafted files; every expected number is computed here, from the
raw files and the real SmolLM2 tokenizer, without the library's code."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from collections import Counter
from pathlib import Path

import pytest

from datasets_app.validation import get_tokenizer, validate_files
from tests.datasets_dir import DATASETS

SHARED = DATASETS
ALPACA = SHARED / "alpaca_en_demo.json"
SHAREGPT = SHARED / "sharegpt_conversations.json"
SELF_INSTRUCT = SHARED / "self_instruct_seed_tasks.jsonl"
HH = SHARED / "hh_rlhf_harmless_test.jsonl.gz"
SELF_INSTRUCT_MAPPING = {"instruction": "instruction", "input": "instances.0.input", "output": "instances.0.output"}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def alpaca_messages(row: dict) -> list[dict]:
    user = f"{row['instruction']}\n\n{row['input']}" if row["input"].strip() else row["instruction"]
    return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def hf_lengths(rows: list[dict]) -> list[int]:
    """Token counts the plain transformers way: apply_chat_template, then encode."""
    tok = get_tokenizer()
    texts = [tok.apply_chat_template(alpaca_messages(r), tokenize=False) for r in rows]
    return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


def exact_duplicates(rows: list[dict]) -> int:
    seen: set[str] = set()
    dups = 0
    for row in rows:
        digest = hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()
        dups += digest in seen
        seen.add(digest)
    return dups


def warning(report: dict, code: str) -> dict | None:
    return next((w for w in report["warnings"] if w["code"] == code), None)


@pytest.fixture(scope="module")
def alpaca_rows() -> list[dict]:
    return json.loads(ALPACA.read_text())


@pytest.fixture(scope="module")
def alpaca_report() -> dict:
    return validate_files([str(ALPACA)], max_length=256)


def test_alpaca_report_counts_match_independent_counts(alpaca_rows, alpaca_report):
    report = alpaca_report
    assert report["format"] == "alpaca" and report["format_detected"] is True
    assert report["rows"] == report["rows_valid"] == len(alpaca_rows) == 999
    assert report["files"] == [{"name": "alpaca_en_demo.json", "rows": 999}]
    empty_input = sum(1 for r in alpaca_rows if not r["input"].strip())
    assert report["columns"] == {
        "instruction": {"missing": 0, "empty": 0},
        "input": {"missing": 0, "empty": empty_input},
        "output": {"missing": 0, "empty": 0},
    }
    assert empty_input == 587
    assert report["duplicates"]["exact"] == exact_duplicates(alpaca_rows) == 14
    assert report["errors"] == [] and report["errors_total"] == 0
    short = [i + 1 for i, r in enumerate(alpaca_rows) if len(r["output"].strip()) < 5]
    assert report["quality"]["very_short"] == len(short)
    assert report["verdict"] == "warnings"  # duplicates and PII-looking rows, no errors


def test_alpaca_token_lengths_match_the_tokenizer(alpaca_rows, alpaca_report):
    lengths = hf_lengths(alpaca_rows)
    tokens = alpaca_report["tokens"]
    assert tokens["tokenizer"] == "SmolLM2-135M-Instruct"
    assert tokens["total"] == sum(lengths)
    assert tokens["percentiles"]["max"] == max(lengths)
    ordered = sorted(lengths)
    assert tokens["percentiles"]["p50"] == ordered[499]  # nearest rank: ceil(0.5 * 999) = 500th value
    assert tokens["over_max_length"] == sum(1 for n in lengths if n > 256)
    histogram = tokens["histogram"]
    assert sum(b["count"] for b in histogram) == 999
    for bucket in histogram:
        assert bucket["count"] == sum(1 for n in lengths if bucket["start"] <= n < bucket["end"])
    # Each line number listed as too long really is, and they are the first ones in file order.
    starts = [m.start() for m in re.finditer(r"^  \{", ALPACA.read_text(), re.M)]
    text = ALPACA.read_text()
    record_lines = [text.count("\n", 0, s) + 1 for s in starts]
    over = [record_lines[i] for i, n in enumerate(lengths) if n > 256]
    assert tokens["over_max_length_lines"] == over[:20]


def test_a_small_sample_measures_every_row_exactly(alpaca_rows, tmp_path):
    sample = alpaca_rows[100:130]
    path = write_jsonl(tmp_path / "sample.jsonl", sample)
    report = validate_files([str(path)], max_length=64)
    lengths = hf_lengths(sample)
    assert report["tokens"]["total"] == sum(lengths)
    assert report["tokens"]["over_max_length"] == sum(1 for n in lengths if n > 64)
    assert report["tokens"]["over_max_length_lines"] == [i + 1 for i, n in enumerate(lengths) if n > 64][:20]
    assert sum(b["count"] for b in report["tokens"]["histogram"]) == 30


def test_raw_text_reports_the_blocks_it_packs_into_instead_of_a_truncation_warning(alpaca_rows, tmp_path):
    docs = [{"text": f"{r['instruction']}\n{r['output']}"} for r in alpaca_rows[:300]]
    report = validate_files([str(write_jsonl(tmp_path / "web.jsonl", docs))], max_length=64)
    tok = get_tokenizer()
    total = sum(len(ids) + 1 for ids in tok([d["text"] for d in docs], add_special_tokens=False)["input_ids"])  # + EOS
    tokens = report["tokens"]
    assert report["format"] == "text" and tokens["total"] == total and tokens["over_max_length"] > 100
    assert tokens["packing"] is True and tokens["packed_blocks"] == -(-total // 64)
    assert "tokens_over_max_length" not in {w["code"] for w in report["warnings"]}


def test_sharegpt_counts_turns_and_roles():
    rows = json.loads(SHAREGPT.read_text())
    report = validate_files([str(SHAREGPT)])
    assert report["format"] == "sharegpt" and report["rows_valid"] == len(rows) == 500
    assert report["verdict"] == "ok"
    stats = report["statistics"]
    turns = Counter(len(r["conversations"]) for r in rows)
    assert stats["turns"]["histogram"] == [{"turns": k, "count": turns[k]} for k in sorted(turns)]
    roles = Counter(m["from"] for r in rows for m in r["conversations"])
    assert stats["roles"] == {"system": 0, "user": roles["human"], "assistant": roles["gpt"]}
    assert sum(b["count"] for b in report["tokens"]["histogram"]) == 500


def test_self_instruct_needs_the_mapping_and_validates_with_it():
    rows = [json.loads(line) for line in SELF_INSTRUCT.read_text().splitlines()]
    unmapped = validate_files([str(SELF_INSTRUCT)])
    assert unmapped["verdict"] == "invalid" and unmapped["rows_valid"] == 0
    assert "Cannot detect the format" in unmapped["errors"][0]["message"]
    assert unmapped["rows"] == 175

    report = validate_files([str(SELF_INSTRUCT)], column_mapping=SELF_INSTRUCT_MAPPING)
    assert report["format"] == "alpaca" and report["column_mapping"] == SELF_INSTRUCT_MAPPING
    assert report["rows"] == report["rows_valid"] == len(rows) == 175
    empty_input = sum(1 for r in rows if not r["instances"][0]["input"].strip())
    assert report["columns"]["input"] == {"missing": 0, "empty": empty_input}
    assert report["errors_total"] == 0 and report["verdict"] in ("ok", "warnings")


def _hh_turns(transcript: str) -> list[list[str]]:
    parts = re.split(r"\n\n(Human|Assistant):[ \t]?", "\n\n" + transcript.lstrip("\n"))
    turns: list[list[str]] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        if turns and turns[-1][0] == speaker:
            turns[-1][1] = (turns[-1][1] + "\n\n" + content.strip()).strip()
        else:
            turns.append([speaker, content.strip()])
    return turns


def test_hh_rlhf_preference_lengths_match_a_parse_of_the_transcripts():
    rows = [json.loads(line) for line in gzip.open(HH, "rt", encoding="utf-8")]
    prompt_chars = chosen_chars = rejected_chars = 0
    for row in rows:
        chosen, rejected = _hh_turns(row["chosen"]), _hh_turns(row["rejected"])
        k = len(chosen) - 1
        if chosen[:-1] != rejected[:-1]:  # they diverge earlier: the prompt ends at the last shared Human turn
            k = 0
            while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
                k += 1
            while chosen[k - 1][0] != "Human":
                k -= 1
        prompt_chars += sum(len(c) for _, c in chosen[:k])
        chosen_chars += sum(len(c) for _, c in chosen[k:])
        rejected_chars += sum(len(c) for _, c in rejected[k:])
    report = validate_files([str(HH)])
    assert report["format"] == "hh_rlhf" and report["rows"] == report["rows_valid"] == len(rows) == 2312
    pref = report["statistics"]["preference"]
    assert pref == {
        "prompt_chars_mean": round(prompt_chars / len(rows), 1),
        "chosen_chars_mean": round(chosen_chars / len(rows), 1),
        "rejected_chars_mean": round(rejected_chars / len(rows), 1),
        "identical_pairs": sum(1 for r in rows if r["chosen"] == r["rejected"]),
    }
    assert sum(b["count"] for b in report["tokens"]["histogram"]) == 2312


ROW = {"instruction": "Name a colour.", "input": "", "output": "Blue is a colour of the sky."}


def test_a_broken_json_line_is_reported_with_its_line_and_the_rest_is_validated(tmp_path):
    lines = [json.dumps({**ROW, "output": f"Answer number {i}."}) for i in range(10)]
    lines[2] = '{"instruction": "broken", "output": "x"'  # line 3
    lines[7] = "[1, 2]"  # line 8: not an object
    lines[5] = json.dumps({"instruction": "no answer", "input": "", "output": "  "})  # line 6: nothing to train
    path = write_jsonl(tmp_path / "data.jsonl", lines)
    report = validate_files([str(path)])
    assert report["rows"] == 10 and report["rows_valid"] == 7
    assert [(e["file"], e["line"]) for e in report["errors"]] == [
        ("data.jsonl", 3),
        ("data.jsonl", 6),
        ("data.jsonl", 8),
    ]
    assert report["errors"][0]["message"].startswith("invalid JSON (")
    assert "'output' is empty" in report["errors"][1]["message"]
    assert "expected a JSON object" in report["errors"][2]["message"]
    assert report["errors_total"] == 3
    assert report["verdict"] == "invalid"
    assert report["tokens"] is not None and sum(b["count"] for b in report["tokens"]["histogram"]) == 7


def test_the_verdict_separates_errors_from_warnings(tmp_path):
    clean = [{**ROW, "output": f"Blue, number {i}, is a colour of the sky."} for i in range(5)]
    ok = validate_files([str(write_jsonl(tmp_path / "ok.jsonl", clean))])
    assert ok["verdict"] == "ok" and ok["warnings"] == [] and ok["errors"] == []
    warned = validate_files([str(write_jsonl(tmp_path / "dup.jsonl", [*clean, clean[0]]))])
    assert warned["verdict"] == "warnings" and warned["errors_total"] == 0
    assert warning(warned, "duplicates_exact")["lines"] == [6]
    broken = validate_files([str(write_jsonl(tmp_path / "bad.jsonl", [*clean, {"instruction": "only"}]))])
    assert broken["verdict"] == "invalid" and broken["errors"][0]["line"] == 6


def test_file_level_problems_are_errors_not_exceptions(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    report = validate_files([str(empty)])
    assert report["verdict"] == "invalid" and report["rows"] == 0
    assert report["errors"][0]["file"] == "empty.jsonl" and "empty" in report["errors"][0]["message"]
    unknown = validate_files([str(write_jsonl(tmp_path / "a.jsonl", [ROW]))], fmt="nonsense")
    assert unknown["verdict"] == "invalid" and "Unknown dataset format 'nonsense'" in unknown["errors"][0]["message"]
    bad_path = validate_files(
        [str(write_jsonl(tmp_path / "b.jsonl", [ROW, ROW]))],
        column_mapping={"instruction": "instruction", "output": "answers.0"},
    )
    assert [e["line"] for e in bad_path["errors"]] == [1, 2]
    assert "answers" in bad_path["errors"][0]["message"]


def test_several_files_are_one_dataset_with_per_file_lines(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [ROW, {"instruction": "x"}])
    b = write_jsonl(tmp_path / "b.jsonl", ["{oops", ROW])
    report = validate_files([str(a), str(b)])
    assert report["files"] == [{"name": "a.jsonl", "rows": 2}, {"name": "b.jsonl", "rows": 2}]
    assert [(e["file"], e["line"]) for e in report["errors"]] == [("a.jsonl", 2), ("b.jsonl", 1)]
    dup = warning(report, "duplicates_exact")
    assert dup["lines"] == [2] and dup["files"] == ["b.jsonl"]
    assert report["duplicates"]["example_files"] == [["a.jsonl", "b.jsonl"]]


PII_ROWS = [
    ("Write to jane.doe@example.com today.", {"email"}),  # line 1
    ("Call (555) 123-4567 or +44 20 7946 0958.", {"phone"}),  # 2
    ("Pay with 4111 1111 1111 1111 please.", {"credit_card"}),  # 3 valid Visa test number
    ("Cards 5555555555554444 and 3782-822463-10005.", {"credit_card"}),  # 4 valid MasterCard, Amex
    ("Not a card: 4111 1111 1111 1112 or 1234567890123456.", set()),  # 5 Luhn-invalid
    ("The server 192.168.1.20 and 2001:db8::8a2e:370:7334 are up.", {"ip_address"}),  # 6
    ("Version 1.2.3 and 999.1.1.1 are not addresses.", set()),  # 7
    ("export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz123456", {"secret"}),  # 8
    ("token hf_abcdefghijklmnopqrstuvwxyzABCDEFGH and AKIAIOSFODNN7EXAMPLE", {"secret"}),  # 9
    ("ghp_0123456789abcdefghijklmnopqrstuvwxyzAB leaked", {"secret"}),  # 10
    ('config: api_key = "Zq8hT3kLm9Xw2"', {"secret"}),  # 11
    ("The key to success is practice: keep going.", set()),  # 12 "key" and ":" but no secret
    ("Mail bob@corp.io, call 555-987-6543, card 4012888888881881.", {"email", "phone", "credit_card"}),  # 13
    ("Meet at 10:30:00 on 2024-05-17, room 12.", set()),  # 14 times and dates
]


def test_pii_counts_and_lines_are_exact_and_luhn_invalid_numbers_are_not_counted(tmp_path):
    rows = [{"instruction": "Repeat the text.", "input": "", "output": text} for text, _ in PII_ROWS]
    report = validate_files([str(write_jsonl(tmp_path / "pii.jsonl", rows))])
    for kind in ("email", "phone", "credit_card", "ip_address", "secret"):
        lines = [i + 1 for i, (_, kinds) in enumerate(PII_ROWS) if kind in kinds]
        assert report["pii"][kind] == {"count": len(lines), "lines": lines}, kind
        w = warning(report, f"pii_{kind}")
        assert w["count"] == len(lines) and w["lines"] == lines
    assert warning(report, "pii_email")["message"] == "2 rows contain email addresses"
    assert report["verdict"] == "warnings"


def test_quality_and_duplicate_counts_on_crafted_rows(tmp_path):
    base = [
        {"instruction": "What is AI?", "input": "", "output": "Artificial intelligence is a field of study."},  # 1
        {"instruction": "Define ML.", "input": "", "output": "ok"},  # 2 very short
        {"instruction": "Write a lot.", "input": "", "output": "word " * 5000},  # 3 very long
        {"instruction": "Ring\x07 the bell.", "input": "", "output": "The bell rings loudly."},  # 4 control char
        {"instruction": "Spell cafe.", "input": "", "output": "CafÃ© au lait â€“ a drink."},  # 5 mojibake
        {"instruction": "What is AI?", "input": "", "output": "Artificial intelligence is a field of study."},  # 6 =1
        {"instruction": "what is ai", "input": "", "output": "Artificial  intelligence is a field of study"},  # 7 ~1
        {
            "instruction": "WHAT IS AI?!",
            "input": "",
            "output": "artificial intelligence, is a field of study.",
        },  # 8 ~1
        {"instruction": "", "input": "", "output": ""},  # 9 empty row: an error, counted as empty
        {"instruction": "What is AI?", "input": "", "output": "Artificial intelligence is a field of study."},  # 10 =1
        {"instruction": "Define ML.", "input": "", "output": "ok"},  # 11 =2 (also very short)
    ]
    report = validate_files([str(write_jsonl(tmp_path / "q.jsonl", base))])
    q = report["quality"]
    assert (q["very_short"], q["lines"]["very_short"]) == (2, [2, 11])
    assert (q["very_long"], q["lines"]["very_long"]) == (1, [3])
    assert (q["control_chars"], q["lines"]["control_chars"]) == (1, [4])
    assert (q["broken_encoding"], q["lines"]["broken_encoding"]) == (1, [5])
    assert (q["empty"], q["lines"]["empty"]) == (1, [9])
    d = report["duplicates"]
    assert (d["exact"], d["normalized"]) == (3, 2)
    assert d["examples"] == [[1, 6], [1, 10], [2, 11]]
    assert d["normalized_examples"] == [[1, 7], [1, 8]]
    assert warning(report, "duplicates_normalized")["lines"] == [7, 8]
    assert [e["line"] for e in report["errors"]] == [9]


def test_progress_is_reported_up_to_one(tmp_path):
    rows = [{**ROW, "output": f"Answer {i} is here."} for i in range(4500)]
    seen: list[float] = []
    validate_files([str(write_jsonl(tmp_path / "p.jsonl", rows))], progress=seen.append)
    assert seen[-1] == 1.0 and len(seen) >= 3
    assert seen == sorted(seen)


def test_counting_tokens_in_a_helper_process_gives_the_same_report(alpaca_rows, tmp_path, caplog):
    rows = [{**r, "output": f"{r['output']} ({i})"} for i, r in enumerate(alpaca_rows[:600] * 2)]
    path = str(write_jsonl(tmp_path / "big.jsonl", rows))
    serial = validate_files([path], max_length=300, parallel=False)
    with caplog.at_level(logging.INFO, logger="datasets_app.validation.parallel"):
        split = validate_files([path], max_length=300, parallel=True)
    helper = [r.getMessage() for r in caplog.records if "helper process" in r.getMessage()]
    assert helper and not helper[0].endswith(" and 0 in a helper process")
    assert split["tokens"]["total"] == sum(hf_lengths(rows))
    assert {k: v for k, v in split.items() if k != "elapsed_s"} == {
        k: v for k, v in serial.items() if k != "elapsed_s"
    }


CONTRACT_KEYS = {
    "verdict", "format", "format_detected", "column_mapping", "rows", "rows_valid", "files", "columns", "errors",
    "errors_total", "warnings", "duplicates", "pii", "quality", "tokens", "statistics", "elapsed_s",
}  # fmt: skip


def test_the_report_is_json_safe_and_has_the_contract_keys(alpaca_report):
    assert set(alpaca_report) >= CONTRACT_KEYS
    assert json.loads(json.dumps(alpaca_report)) == alpaca_report
    assert set(alpaca_report["tokens"]["percentiles"]) == {"p50", "p90", "p95", "p99", "max"}
    assert set(alpaca_report["pii"]) == {"email", "phone", "credit_card", "ip_address", "secret"}
    assert set(alpaca_report["statistics"]) == {"rows", "format", "chars", "turns", "roles", "preference", "labels"}


def test_csv_and_parquet_files_validate_and_a_ragged_csv_line_is_an_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = tmp_path / "d.csv"
    csv_path.write_text('instruction,input,output\n"Add 2 and 2",,4 is the sum\n"Say hi, twice",,"Hi, hi!"\n')
    report = validate_files([str(csv_path)])
    assert (report["format"], report["rows_valid"], report["verdict"]) == ("alpaca", 2, "ok")
    assert report["columns"]["input"] == {"missing": 0, "empty": 2}
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.table({"prompt": ["Capital of France?"], "completion": ["Paris is the capital."]}), parquet)
    report = validate_files([str(parquet)])
    assert (report["format"], report["rows_valid"], report["verdict"]) == ("prompt_completion", 1, "ok")
    ragged = tmp_path / "r.csv"
    ragged.write_text("instruction,output\nQ1,A one\nQ2,A two,extra\nQ3,A three\n")
    report = validate_files([str(ragged)])
    assert report["rows_valid"] == 1 and report["errors"][0]["line"] == 3
    assert "has 3 fields but the header has 2" in report["errors"][0]["message"]
    assert "Reading of this file stopped here" in report["errors"][0]["message"]
