"""preprocess (each step on crafted rows; canonical output that validates again) and split."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from datasets_app.validation import StepError, get_tokenizer, preprocess, split, validate_files
from tests.datasets_dir import DATASETS

SHARED = DATASETS
ALPACA = SHARED / "alpaca_en_demo.json"
HH = SHARED / "hh_rlhf_harmless_test.jsonl.gz"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def read_jsonl(path: Path | str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def qa(question: str, answer: str) -> dict:
    return {"instruction": question, "input": "", "output": answer}


def run(tmp_path: Path, rows: list[dict], steps: list[dict], **kw) -> tuple[dict, list[dict]]:
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = preprocess([src], steps=steps, out_path=str(out), **kw)
    return result, read_jsonl(out)


def test_normalize_unicode_fixes_mojibake_nfc_and_control_characters(tmp_path):
    rows = [
        qa("Spell it.", "CafÃ© â€“ crÃ¨me brÃ»lÃ©e."),
        qa("Decomposed?", "Cafe\u0301 au lait."),
        qa("Bell\x07 and tab\tand\r\nnewline.", "Fine."),
        qa("Clean?", "Nothing to do."),
    ]
    result, out = run(tmp_path, rows, [{"op": "normalize_unicode"}])
    answers = [r["messages"][1]["content"] for r in out]
    assert answers[0] == "Café – crème brûlée."
    assert answers[1] == "Café au lait." and unicodedata.is_normalized("NFC", answers[1])
    assert out[2]["messages"][0]["content"] == "Bell and tab\tand\nnewline."
    assert result["steps"] == [{"op": "normalize_unicode", "changed": 3}]
    assert result["rows_in"] == result["rows_out"] == 4 and result["format"] == "messages"


def test_strip_whitespace_trims_and_collapses_blank_lines(tmp_path):
    rows = [qa("  Padded question?  ", "First.\n\n\n\n\nSecond.\n \n\t\n \nThird.   "), qa("Tidy?", "Yes, tidy.")]
    result, out = run(tmp_path, rows, [{"op": "strip_whitespace"}])
    assert out[0]["messages"][0]["content"] == "Padded question?"
    assert out[0]["messages"][1]["content"] == "First.\n\n\nSecond.\n\n\nThird."
    assert result["steps"][0]["changed"] == 1


DUPES = [
    qa("What is AI?", "A field of study."),  # kept
    qa("What is AI?", "A field of study."),  # exact duplicate
    qa("what is ai", "a field of study"),  # normalized duplicate
    qa("WHAT  IS AI?!", "A field, of study."),  # normalized duplicate
    qa("What is ML?", "A part of AI."),  # kept
]


def test_dedupe_exact_removes_only_identical_rows(tmp_path):
    result, out = run(tmp_path, DUPES, [{"op": "dedupe", "mode": "exact"}])
    assert result["rows_out"] == 4 and result["steps"][0]["removed"] == 1
    assert [r["messages"][0]["content"] for r in out] == ["What is AI?", "what is ai", "WHAT  IS AI?!", "What is ML?"]


def test_dedupe_normalized_also_removes_case_whitespace_and_punctuation_variants(tmp_path):
    result, out = run(tmp_path, DUPES, [{"op": "dedupe", "mode": "normalized"}])
    assert result["rows_out"] == 2 and result["steps"][0] == {"op": "dedupe", "mode": "normalized", "removed": 3}
    assert [r["messages"][0]["content"] for r in out] == ["What is AI?", "What is ML?"]


def test_redact_pii_replaces_each_kind_with_its_label(tmp_path):
    rows = [
        qa("Contact?", "Mail jane@example.com or call (555) 123-4567."),
        qa("Pay?", "Card 4111 1111 1111 1111, not 4111 1111 1111 1112."),
        qa("Where?", "Host 10.0.0.7 with key sk-abcdefghijklmnopqrstuvwxyz0123 and password: hunter22x"),
        qa("Nothing?", "Nothing personal here."),
    ]
    result, out = run(tmp_path, rows, [{"op": "redact_pii"}])
    answers = [r["messages"][1]["content"] for r in out]
    assert answers == [
        "Mail [EMAIL] or call [PHONE].",
        "Card [CREDIT_CARD], not 4111 1111 1111 1112.",
        "Host [IP_ADDRESS] with key [SECRET] and password: [SECRET]",
        "Nothing personal here.",
    ]
    assert result["steps"][0] == {
        "op": "redact_pii",
        "changed": 3,
        "email": 1,
        "phone": 1,
        "credit_card": 1,
        "ip_address": 1,
        "secret": 2,
    }
    again = validate_files([str(tmp_path / "out.jsonl")])
    assert all(v["count"] == 0 for v in again["pii"].values())


def test_apply_template_turns_conversations_into_text(tmp_path):
    rows = [qa("Say hi.", "Hi!"), qa("Count to two.", "One, two.")]
    result, out = run(tmp_path, rows, [{"op": "apply_template", "template": "chatml"}])
    assert result["format"] == "text" and result["steps"][0]["converted"] == 2
    assert out[0] == {"text": "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>"}
    _, alpaca = run(tmp_path, rows, [{"op": "apply_template", "template": "alpaca"}])
    assert alpaca[0]["text"].endswith("### Instruction:\nSay hi.\n\n### Response:\nHi!<|im_end|>")


def test_chunk_splits_text_on_token_boundaries_with_overlap(tmp_path):
    tok = get_tokenizer()
    text = " ".join(f"Sentence number {i} talks about tokens and chunks." for i in range(30))
    rows = [{"text": text}, {"text": "Short text."}]
    result, out = run(tmp_path, rows, [{"op": "chunk", "max_tokens": 32, "overlap": 8}])
    pieces = [r["text"] for r in out]
    assert pieces[-1] == "Short text."
    chunks = pieces[:-1]
    assert result["steps"][0] == {
        "op": "chunk",
        "max_tokens": 32,
        "overlap": 8,
        "split_rows": 1,
        "chunks": len(pieces),
    }
    ids = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    n = len(ids["input_ids"])
    assert len(chunks) == -(-(n - 8) // 24)  # stride 24 over n tokens
    for i, chunk in enumerate(chunks):
        start = i * 24
        end = min(start + 32, n)
        assert chunk == text[ids["offset_mapping"][start][0] : ids["offset_mapping"][end - 1][1]]
        assert len(tok(chunk, add_special_tokens=False)["input_ids"]) <= 32
    for a, b in zip(chunks, chunks[1:]):
        a_ids = tok(a, add_special_tokens=False)["input_ids"]
        b_ids = tok(b, add_special_tokens=False)["input_ids"]
        assert tok.decode(a_ids[-8:]).strip() == tok.decode(b_ids[:8]).strip()  # 8 shared tokens


def test_chunking_conversations_needs_a_template_first(tmp_path):
    with pytest.raises(StepError, match=r"Step 1 \(chunk\): chunking works on plain text only"):
        run(tmp_path, [qa("Q?", "A.")], [{"op": "chunk", "max_tokens": 64}])
    result, out = run(
        tmp_path,
        [qa("Q?", "A.")],
        [{"op": "apply_template", "template": "chatml"}, {"op": "chunk", "max_tokens": 8, "overlap": 2}],
    )
    assert result["format"] == "text" and len(out) > 1


def test_filter_length_drops_short_and_long_rows(tmp_path):
    rows = [qa("Hi", "Yo"), qa("Explain.", "A reasonable answer of some length."), qa("Long?", "word " * 300)]
    result, out = run(tmp_path, rows, [{"op": "filter_length", "min_chars": 10, "max_tokens": 100}])
    assert [r["messages"][0]["content"] for r in out] == ["Explain."]
    assert result["steps"][0] == {
        "op": "filter_length",
        "min_chars": 10,
        "max_tokens": 100,
        "removed": 2,
        "too_short": 1,
        "too_long": 1,
    }


def test_bad_steps_are_refused_with_the_step_named(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [qa("Q?", "A.")])
    out = str(tmp_path / "o.jsonl")
    cases = [
        ([{"op": "strip_whitespace"}, {"op": "shuffle"}], r"Step 2: unknown op 'shuffle'"),
        ([{"op": "dedupe", "mode": "fuzzy"}], r"Step 1 \(dedupe\): mode must be"),
        ([{"op": "chunk", "max_tokens": 16, "overlap": 16}], r"Step 1 \(chunk\): overlap"),
        ([{"op": "apply_template", "template": "vicuna"}], r"Step 1 \(apply_template\): template must be"),
        ([{"op": "redact_pii", "level": 3}], r"Step 1 \(redact_pii\): unknown option\(s\) level"),
        ([{"op": "filter_length"}], r"Step 1 \(filter_length\): give min_chars"),
    ]
    for steps, message in cases:
        with pytest.raises(StepError, match=message):
            preprocess([src], steps=steps, out_path=out)
    assert issubclass(StepError, ValueError)


def test_preference_pairs_stay_canonical_and_validate_again(tmp_path):
    out = tmp_path / "hh.jsonl"
    result = preprocess(
        [str(HH)], steps=[{"op": "strip_whitespace"}, {"op": "dedupe", "mode": "exact"}], out_path=str(out)
    )
    assert result["format"] == "preference" and result["rows_in"] == 2312
    rows = read_jsonl(out)
    assert set(rows[0]) == {"prompt", "chosen", "rejected"} and rows[0]["chosen"][0]["role"] == "assistant"
    report = validate_files([str(out)])
    assert report["format"] == "preference" and report["rows_valid"] == result["rows_out"]
    with pytest.raises(StepError, match="preference pairs cannot be turned into plain text"):
        preprocess([str(HH)], steps=[{"op": "apply_template", "template": "chatml"}], out_path=str(out))


def test_preprocessed_alpaca_is_canonical_and_validates_again(tmp_path):
    out = tmp_path / "clean.jsonl"
    result = preprocess(
        [str(ALPACA)],
        steps=[
            {"op": "normalize_unicode"},
            {"op": "strip_whitespace"},
            {"op": "dedupe", "mode": "exact"},
            {"op": "redact_pii"},
        ],
        out_path=str(out),
    )
    assert result["rows_in"] == 999 and result["rows_out"] == 999 - 14 and result["rows_invalid"] == 0
    rows = read_jsonl(out)
    assert all(set(r) == {"messages"} for r in rows)
    report = validate_files([str(out)])
    assert report["format"] == "messages" and report["rows_valid"] == 985
    assert report["duplicates"]["exact"] == 0 and report["verdict"] in ("ok", "warnings")
    assert all(v["count"] == 0 for v in report["pii"].values())


def test_split_is_deterministic_disjoint_and_has_the_ratio(tmp_path):
    def do(seed: int, tag: str) -> tuple[dict, list[str], list[str]]:
        train, val = tmp_path / f"train-{tag}.jsonl", tmp_path / f"val-{tag}.jsonl"
        result = split([str(ALPACA)], validation_ratio=0.1, seed=seed, train_out=str(train), validation_out=str(val))
        return result, train.read_text().splitlines(), val.read_text().splitlines()

    result, train, val = do(42, "a")
    assert result == {"train_rows": 899, "validation_rows": 100, "seed": 42, "validation_ratio": 0.1}
    assert len(train) == 899 and len(val) == 100
    _, train2, val2 = do(42, "b")
    assert (train2, val2) == (train, val)
    _, _, val3 = do(7, "c")
    assert val3 != val
    # Disjoint and complete: every canonical row lands in exactly one side (row positions, since 14 rows repeat).
    rows = json.loads(ALPACA.read_text())
    canonical = [
        json.dumps(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": f"{r['instruction']}\n\n{r['input']}" if r["input"].strip() else r["instruction"],
                    },
                    {"role": "assistant", "content": r["output"]},
                ]
            },
            ensure_ascii=False,
        )
        for r in rows
    ]
    assert sorted(train + val) == sorted(canonical)
    assert all(set(json.loads(line)) == {"messages"} for line in val)
    with pytest.raises(ValueError, match="validation_ratio"):
        split(
            [str(ALPACA)],
            validation_ratio=1.0,
            seed=1,
            train_out=str(tmp_path / "t"),
            validation_out=str(tmp_path / "v"),
        )
