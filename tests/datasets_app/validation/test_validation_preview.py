"""preview (rows rendered with the chat template, trained parts marked, pagination) and statistics."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from datasets_app.validation import get_tokenizer, preview, statistics
from tests.datasets_dir import DATASETS

SHARED = DATASETS
ALPACA = SHARED / "alpaca_en_demo.json"
SHAREGPT = SHARED / "sharegpt_conversations.json"
HH = SHARED / "hh_rlhf_harmless_test.jsonl.gz"


@pytest.fixture(scope="module")
def alpaca_rows() -> list[dict]:
    return json.loads(ALPACA.read_text())


def test_an_alpaca_row_is_rendered_with_chatml_and_only_the_answer_is_trained(alpaca_rows):
    page = preview([str(ALPACA)], offset=0, limit=1)
    assert page["count"] == 999 and page["offset"] == 0 and page["limit"] == 1
    item = page["results"][0]
    row = alpaca_rows[0]
    assert item["index"] == 0 and item["line"] == 2  # the array's first object starts on line 2
    messages = [{"role": "user", "content": row["instruction"]}, {"role": "assistant", "content": row["output"]}]
    assert item["messages"] == messages and item["preference"] is None
    tok = get_tokenizer()
    expected = tok.apply_chat_template(messages, tokenize=False)
    assert "".join(s["text"] for s in item["segments"]) == expected
    assert expected.startswith("<|im_start|>system\n")  # SmolLM2's own template adds its default system prompt
    assert [s["text"] for s in item["segments"] if s["trained"]] == [row["output"] + "<|im_end|>"]
    assert item["tokens"] == len(tok(expected, add_special_tokens=False)["input_ids"])
    assert item["truncated"] is False


def test_pagination_offsets_follow_the_valid_rows(alpaca_rows):
    page = preview([str(ALPACA)], offset=5, limit=3)
    assert [r["index"] for r in page["results"]] == [5, 6, 7]
    for item, row in zip(page["results"], alpaca_rows[5:8], strict=True):
        assert item["messages"][-1]["content"] == row["output"]
    last = preview([str(ALPACA)], offset=997, limit=10)
    assert [r["index"] for r in last["results"]] == [997, 998]
    assert preview([str(ALPACA)], offset=2000, limit=10)["results"] == []
    with pytest.raises(ValueError):
        preview([str(ALPACA)], offset=-1, limit=10)


def test_invalid_rows_are_skipped_and_lines_point_at_the_file(tmp_path):
    rows = [
        json.dumps({"instruction": "A?", "output": "Yes, A."}),
        "{broken",
        json.dumps({"instruction": "B?", "output": "Yes, B."}),
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(rows) + "\n")
    page = preview([str(path)], offset=0, limit=10)
    assert page["count"] == 2
    assert [(r["index"], r["line"]) for r in page["results"]] == [(0, 1), (1, 3)]


def test_truncation_past_max_length_is_marked(alpaca_rows):
    item = preview([str(ALPACA)], offset=0, limit=1, max_length=40)["results"][0]
    assert item["truncated"] is True and item["tokens"] > 40
    assert item["segments"][-1]["truncated"] is True and item["segments"][-1]["trained"] is False
    kept = "".join(s["text"] for s in item["segments"] if not s["truncated"])
    assert len(get_tokenizer()(kept, add_special_tokens=False)["input_ids"]) == 40


def test_a_named_template_is_used_instead_of_the_tokenizers_own(alpaca_rows):
    item = preview([str(ALPACA)], offset=0, limit=1, chat_template="chatml")["results"][0]
    text = "".join(s["text"] for s in item["segments"])
    assert text.startswith("<|im_start|>user\n" + alpaca_rows[0]["instruction"])


def test_preference_rows_show_chosen_trained_and_rejected_apart():
    first = json.loads(gzip.open(HH, "rt", encoding="utf-8").readline())
    item = preview([str(HH)], offset=0, limit=1)["results"][0]
    pref = item["preference"]
    assert item["messages"] is None and set(pref) >= {"prompt", "chosen", "rejected", "rejected_segments"}
    chosen_reply = first["chosen"].rsplit("\n\nAssistant:", 1)[1].strip()
    rejected_reply = first["rejected"].rsplit("\n\nAssistant:", 1)[1].strip()
    assert [s["text"] for s in item["segments"] if s["trained"]] == [chosen_reply + "<|im_end|>"]
    assert [s["text"] for s in pref["rejected_segments"] if s["trained"]] == [rejected_reply + "<|im_end|>"]


def test_plain_text_rows_are_trained_whole_with_eos(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "Once upon a time there was a tokenizer."}) + "\n")
    item = preview([str(path)], offset=0, limit=1)["results"][0]
    assert item["segments"] == [
        {"text": "Once upon a time there was a tokenizer.<|im_end|>", "trained": True, "truncated": False}
    ]
    assert item["messages"] is None and item["preference"] is None


def test_statistics_on_sharegpt_count_turns_and_role_balance():
    rows = json.loads(SHAREGPT.read_text())
    stats = statistics([str(SHAREGPT)])
    assert stats["rows"] == 500 and stats["format"] == "sharegpt" and stats["preference"] is None
    turns = Counter(len(r["conversations"]) for r in rows)
    assert stats["turns"]["histogram"] == [{"turns": k, "count": turns[k]} for k in sorted(turns)]
    assert stats["turns"]["max"] == max(turns)
    assert stats["turns"]["mean"] == round(sum(k * v for k, v in turns.items()) / 500, 2)
    roles = Counter(m["from"] for r in rows for m in r["conversations"])
    assert stats["roles"] == {"system": 0, "user": roles["human"], "assistant": roles["gpt"]}
    chars = sorted(sum(len(m["value"]) for m in r["conversations"]) for r in rows)
    assert stats["chars"]["max"] == chars[-1]
    assert stats["chars"]["mean"] == round(sum(chars) / 500, 1)


def test_statistics_on_hh_rlhf_have_preference_lengths():
    rows = [json.loads(line) for line in gzip.open(HH, "rt", encoding="utf-8")]
    stats = statistics([str(HH)])
    assert stats["rows"] == len(rows) and stats["format"] == "hh_rlhf"
    pref = stats["preference"]
    assert pref["identical_pairs"] == 0
    # The final replies: rows whose transcripts share everything but the last turn dominate the means.
    chosen = [r["chosen"].rsplit("\n\nAssistant:", 1)[1].strip() for r in rows]
    assert abs(pref["chosen_chars_mean"] - sum(map(len, chosen)) / len(rows)) < 5
    assert pref["prompt_chars_mean"] > pref["chosen_chars_mean"] > 0


def test_statistics_count_identical_preference_pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "Hi?", "chosen": "Hello there.", "rejected": "Go away."},
        {"prompt": "Hi again?", "chosen": "Same.", "rejected": "Same."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = statistics([str(path)])
    assert stats["format"] == "preference" and stats["rows"] == 1
    assert stats["preference"] == {
        "prompt_chars_mean": 3.0,
        "chosen_chars_mean": 12.0,
        "rejected_chars_mean": 8.0,
        "identical_pairs": 1,
    }
