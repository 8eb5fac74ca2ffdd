"""Format detection, column mapping, conversion to canonical examples and load_examples, on the real shared files."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from tests.datasets_dir import DATASETS  # noqa: E402
from training.engine.data import (
    DatasetFormat,
    apply_column_mapping,
    detect_format,
    get_path,
    is_preference,
    iter_records,
    load_examples,
    split_hh_transcript,
    to_canonical,
)
from training.engine.errors import DataError

ALPACA = DATASETS / "alpaca_en_demo.json"
SHAREGPT = DATASETS / "sharegpt_conversations.json"
SELF_INSTRUCT = DATASETS / "self_instruct_seed_tasks.jsonl"
HH = DATASETS / "hh_rlhf_harmless_test.jsonl.gz"
SELF_INSTRUCT_MAPPING = {"instruction": "instruction", "input": "instances.0.input", "output": "instances.0.output"}


def _sample(path: Path, n: int = 100) -> list[dict]:
    rows = []
    for _, row in iter_records(path):
        rows.append(row)
        if len(rows) == n:
            break
    return rows


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


# --- detection on the real files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt"),
    [(ALPACA, DatasetFormat.ALPACA), (SHAREGPT, DatasetFormat.SHAREGPT), (HH, DatasetFormat.HH_RLHF)],
)
def test_each_shared_file_is_detected_as_its_format(path, fmt):
    assert detect_format(_sample(path)) == fmt


def test_alpaca_and_sharegpt_files_load_every_row():
    alpaca = load_examples([ALPACA])
    assert alpaca.format == DatasetFormat.ALPACA
    assert len(alpaca.examples) == alpaca.rows_read == len(json.loads(ALPACA.read_text(encoding="utf-8")))
    assert alpaca.row_errors == [] and alpaca.sha256 == hashlib.sha256(ALPACA.read_bytes()).hexdigest()
    sharegpt = load_examples([SHAREGPT])
    assert sharegpt.format == DatasetFormat.SHAREGPT
    assert len(sharegpt.examples) == len(json.loads(SHAREGPT.read_text(encoding="utf-8")))


def test_self_instruct_detection_fails_with_a_helpful_message_then_loads_with_a_mapping():
    with pytest.raises(DataError) as info:
        load_examples([SELF_INSTRUCT])
    message = str(info.value)
    assert "Cannot detect the format: columns found: id, name, instruction, instances, is_classification" in message
    assert "alpaca (instruction, output" in message and "sharegpt (conversations" in message
    assert "column_mapping" in message
    loaded = load_examples([SELF_INSTRUCT], column_mapping=SELF_INSTRUCT_MAPPING)
    with SELF_INSTRUCT.open(encoding="utf-8") as fh:
        expected = [json.loads(line) for line in fh if line.strip()]
    assert loaded.format == DatasetFormat.ALPACA
    assert len(loaded.examples) == len(expected) == 175
    first = loaded.examples[0]["messages"]
    assert first[-1] == _assistant(expected[0]["instances"][0]["output"])
    with_input = next(i for i, row in enumerate(expected) if row["instances"][0]["input"])
    user = loaded.examples[with_input]["messages"][-2]["content"]
    assert user == f"{expected[with_input]['instruction']}\n\n{expected[with_input]['instances'][0]['input']}"


def test_hh_rlhf_file_splits_prompts_at_the_shared_prefix():
    loaded = load_examples([HH])
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        raw = [json.loads(line) for line in fh if line.strip()]
    assert loaded.format == DatasetFormat.HH_RLHF and loaded.rows_read == len(raw)
    assert len(loaded.examples) + loaded.rows_skipped == len(raw)
    assert len(loaded.examples) >= len(raw) - 5  # nearly every real row converts
    for ex in loaded.examples:
        assert ex["prompt"][-1]["role"] == "user"
        assert [m["role"] for m in ex["prompt"]][::2] == ["user"] * ((len(ex["prompt"]) + 1) // 2)
        assert ex["chosen"][0]["role"] == ex["rejected"][0]["role"] == "assistant"
        assert ex["chosen"] != ex["rejected"]
    first = loaded.examples[0]
    assert first["prompt"][0] == _user("what are some pranks with a pen i can do?")
    assert len(first["prompt"]) == 5 and first["chosen"][0]["content"].startswith("No, sorry!")
    assert raw[0]["chosen"].endswith(first["chosen"][0]["content"])
    assert raw[0]["rejected"].endswith(first["rejected"][0]["content"])


def test_hh_rlhf_edge_cases_from_the_real_file():
    rows = [row for _, row in iter_records(HH)]
    # Row 668 repeats "Assistant:" turns (a transcript that was not cleanly split): they are merged.
    ex = to_canonical(rows[667], DatasetFormat.HH_RLHF)
    roles = [m["role"] for m in ex["prompt"]]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
    # Row 87 prefers an empty answer (silence) over a harmful one: kept, with an empty chosen turn.
    ex = to_canonical(rows[86], DatasetFormat.HH_RLHF)
    assert ex["chosen"] == [_assistant("")] and ex["rejected"][0]["content"]
    # "Assistant: Human: ..." inline (no blank line) is content, not a new turn.
    ex = to_canonical(rows[105], DatasetFormat.HH_RLHF)
    assert ex["chosen"][0]["content"].startswith("Human:")


def test_split_hh_transcript():
    msgs = split_hh_transcript("\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye\n\nAssistant:")
    assert msgs == [_user("Hi"), _assistant("Hello"), _user("Bye"), _assistant("")]
    with pytest.raises(DataError, match="no 'Human:'/'Assistant:' turns"):
        split_hh_transcript("just text")


# --- conversion -------------------------------------------------------------------------------------------------------


def test_alpaca_with_and_without_input():
    no_input = to_canonical({"instruction": "Name a color.", "input": "", "output": "Blue."}, "alpaca")
    assert no_input == {"messages": [_user("Name a color."), _assistant("Blue.")]}
    with_input = to_canonical({"instruction": "Add.", "input": "2 and 2", "output": "4"}, DatasetFormat.ALPACA)
    assert with_input["messages"][0] == _user("Add.\n\n2 and 2")
    numeric = to_canonical({"instruction": "Add.", "input": "2 and 2", "output": 4}, DatasetFormat.ALPACA)
    assert numeric["messages"][-1] == _assistant("4")


def test_alpaca_system_history_and_default_system_prompt():
    row = {
        "instruction": "And now?",
        "input": "",
        "output": "Now 3.",
        "system": "Count.",
        "history": [["Start", "1"], ["Next", "2"]],
    }
    assert to_canonical(row, "alpaca")["messages"] == [
        {"role": "system", "content": "Count."},
        _user("Start"),
        _assistant("1"),
        _user("Next"),
        _assistant("2"),
        _user("And now?"),
        _assistant("Now 3."),
    ]
    plain = {"instruction": "Hi", "output": "Hello"}
    assert to_canonical(plain, "alpaca", system_prompt="Be brief.")["messages"][0] == {
        "role": "system",
        "content": "Be brief.",
    }


def test_alpaca_rejects_empty_output():
    with pytest.raises(DataError, match="'output' is empty"):
        to_canonical({"instruction": "Hi", "input": "", "output": "  "}, "alpaca")


def test_sharegpt_multi_turn_roles():
    row = json.loads(SHAREGPT.read_text(encoding="utf-8"))[0]
    messages = to_canonical(row, "sharegpt")["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == row["conversations"][1]["value"]
    row = {
        "system": "You are terse.",
        "conversations": [
            {"from": "human", "value": "a"},
            {"from": "chatgpt", "value": "b"},
            {"from": "user", "value": "c"},
            {"from": "bing", "value": "d"},
        ],
    }
    assert [m["role"] for m in to_canonical(row, "sharegpt")["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]


def test_sharegpt_rejects_no_assistant_turn_and_roles_out_of_order():
    with pytest.raises(DataError, match="no assistant turn"):
        to_canonical({"conversations": [{"from": "human", "value": "hello?"}]}, "sharegpt")
    out_of_order = {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}
    with pytest.raises(DataError, match="roles out of order at turn 1: expected 'assistant'"):
        to_canonical(out_of_order, "sharegpt")
    with pytest.raises(DataError, match="has role 'narrator'"):
        to_canonical({"conversations": [{"from": "narrator", "value": "a"}]}, "sharegpt")


def test_sharegpt_drops_a_trailing_user_turn():
    row = {
        "conversations": [
            {"from": "human", "value": "a"},
            {"from": "gpt", "value": "b"},
            {"from": "human", "value": "c"},
        ]
    }
    assert to_canonical(row, "sharegpt")["messages"] == [_user("a"), _assistant("b")]


def test_messages_format_and_content_parts():
    row = {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hi"},
        ]
    }
    assert to_canonical(row, "messages")["messages"] == [
        {"role": "system", "content": "sys"},
        _user("Hello there"),
        _assistant("Hi"),
    ]


def test_prompt_completion_and_text():
    assert to_canonical({"prompt": "2+2=", "completion": "4"}, "prompt_completion") == {
        "messages": [_user("2+2="), _assistant("4")]
    }
    assert to_canonical({"text": "Once upon a time."}, "text") == {"text": "Once upon a time."}
    with pytest.raises(DataError, match="'text' is empty"):
        to_canonical({"text": ""}, "text")


def test_explicit_preference_with_strings_and_message_lists():
    ex = to_canonical({"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."}, "preference")
    assert ex == {
        "prompt": [_user("Capital of France?")],
        "chosen": [_assistant("Paris.")],
        "rejected": [_assistant("Rome.")],
    }
    lists = {
        "prompt": [{"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }
    assert to_canonical(lists, "preference")["chosen"] == [_assistant("Hello!")]
    implicit = {
        "chosen": [_user("Hi"), _assistant("Hello!")],
        "rejected": [_user("Hi"), _assistant("Go away.")],
    }
    assert detect_format([implicit]) == DatasetFormat.PREFERENCE
    assert to_canonical(implicit, "preference")["prompt"] == [_user("Hi")]
    with pytest.raises(DataError, match="identical"):
        to_canonical({"prompt": "p", "chosen": "same", "rejected": "same"}, "preference")


def test_sharegpt_preference():
    row = {
        "conversations": [{"from": "human", "value": "Pick a number"}],
        "chosen": {"from": "gpt", "value": "7"},
        "rejected": {"from": "gpt", "value": "I refuse"},
    }
    assert detect_format([row]) == DatasetFormat.SHAREGPT_PREFERENCE
    assert to_canonical(row, "sharegpt_preference") == {
        "prompt": [_user("Pick a number")],
        "chosen": [_assistant("7")],
        "rejected": [_assistant("I refuse")],
    }
    assert is_preference("sharegpt_preference") and is_preference(DatasetFormat.HH_RLHF)
    assert not is_preference(DatasetFormat.ALPACA)


# --- mapping ------------------------------------------------------------------------------------------------------------


def test_get_path_and_column_mapping():
    row = json.loads(SELF_INSTRUCT.read_text(encoding="utf-8").split("\n")[0])
    assert get_path(row, "instances.0.output") == row["instances"][0]["output"]
    assert get_path(row, "instances.-1.input") == row["instances"][-1]["input"]
    mapped = apply_column_mapping(row, SELF_INSTRUCT_MAPPING)
    assert set(mapped) == {"instruction", "input", "output"}
    with pytest.raises(DataError, match=r"data.jsonl line 4: column path 'instances.3.input'.*has 1 item"):
        apply_column_mapping(row, {"input": "instances.3.input"}, where="data.jsonl line 4")
    with pytest.raises(DataError, match="has no key 'answer'"):
        get_path(row, "answer")
    assert apply_column_mapping(row, {"input": "missing?", "output": "name"}) == {"output": row["name"]}


def test_mapping_errors_become_row_errors_with_lines(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"q": "a?", "a": {"text": "A"}},
        {"q": "b?"},
        {"q": "c?", "a": {"text": "C"}},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    loaded = load_examples([path], column_mapping={"instruction": "q", "output": "a.text"})
    assert len(loaded.examples) == 2 and loaded.rows_skipped == 1
    (error,) = loaded.row_errors
    assert error.file == "mixed.jsonl" and error.line == 2 and "a.text" in error.message


# --- load_examples behaviour ------------------------------------------------------------------------------------------


def test_unknown_format_name_lists_valid_names():
    with pytest.raises(DataError) as info:
        load_examples([ALPACA], fmt="openai")
    assert "Unknown dataset format 'openai'" in str(info.value)
    assert "alpaca" in str(info.value) and "sharegpt_preference" in str(info.value)


def test_missing_columns_for_a_forced_format_list_the_columns(tmp_path):
    with pytest.raises(DataError) as info:
        load_examples([SHAREGPT], fmt="alpaca")
    message = str(info.value)
    assert "No row could be converted as alpaca" in message
    assert "sharegpt_conversations.json line 2: missing column 'instruction' (columns: id, conversations)" in message


def test_bad_rows_are_skipped_and_reported_with_lines(tmp_path):
    path = tmp_path / "chat.jsonl"
    good = {"messages": [_user("hi"), _assistant("hello")]}
    bad = {"messages": [_user("hi"), _user("again")]}
    path.write_text("\n".join(json.dumps(r) for r in [good, bad, good, bad]))
    loaded = load_examples([path], max_row_errors=1)
    assert loaded.format == DatasetFormat.MESSAGES and len(loaded.examples) == 2
    assert loaded.rows_skipped == 2 and len(loaded.row_errors) == 1
    assert str(loaded.row_errors[0]).startswith("chat.jsonl line 2: messages: roles out of order")


def test_limit_several_files_and_combined_hash(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(json.dumps({"text": f"a{i}"}) for i in range(3)))
    b.write_text("\n".join(json.dumps({"text": f"b{i}"}) for i in range(3)))
    loaded = load_examples([a, b])
    assert [e["text"] for e in loaded.examples] == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert loaded.sha256 == hashlib.sha256(a.read_bytes() + b.read_bytes()).hexdigest()
    assert len(load_examples([a, b], limit=4).examples) == 4


# --- KTO (unpaired preference) ------------------------------------------------------------------------------------


KTO_ROWS = [
    {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}], "label": True},
    {
        "messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Go away."}],
        "label": False,
    },
]


def test_kto_rows_are_their_own_format_not_plain_messages():
    assert detect_format(KTO_ROWS) == DatasetFormat.KTO
    assert detect_format([{"prompt": "Q", "completion": "A", "label": "false"}]) == DatasetFormat.KTO
    # A label that is no yes/no (a class name) is not KTO, and a text row with a label stays text.
    assert detect_format([{"prompt": "Q", "completion": "A", "label": "sports"}]) == DatasetFormat.PROMPT_COMPLETION
    assert detect_format([{"text": "x", "label": True}]) == DatasetFormat.TEXT
    assert not is_preference(DatasetFormat.KTO)


def test_kto_rows_convert_to_prompt_completion_label():
    assert to_canonical(KTO_ROWS[1], "kto") == {
        "prompt": [{"role": "user", "content": "Say hi"}],
        "completion": [{"role": "assistant", "content": "Go away."}],
        "label": False,
    }
    row = to_canonical({"prompt": "Q", "completion": "A", "label": 1}, "kto", system_prompt="Be brief.")
    assert row["prompt"][0] == {"role": "system", "content": "Be brief."} and row["label"] is True
    with pytest.raises(DataError, match="'label' must be true .desirable. or false .undesirable., found 'maybe'"):
        to_canonical({"prompt": "Q", "completion": "A", "label": "maybe"}, "kto")
    with pytest.raises(DataError, match="the conversation has no assistant turn"):
        to_canonical({"messages": [{"role": "user", "content": "Q"}], "label": True}, "kto")


def test_sft_on_kto_data_is_refused_with_the_way_forward(tmp_path):
    from training.engine.data import build_sft_dataset

    path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in KTO_ROWS))
    loaded = load_examples([path])
    assert loaded.format == DatasetFormat.KTO and loaded.is_unpaired_preference
    with pytest.raises(DataError) as info:
        build_sft_dataset(loaded, tokenizer=None, max_length=64)
    message = str(info.value)
    assert "KTO data" in message and "(1 of 2 rows are undesirable)" in message
    assert "method 'kto'" in message and "'Keep only desirable rows' (keep_desirable)" in message
