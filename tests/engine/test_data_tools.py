"""Tool-calling data on the embedded SmolLM2: both layouts (LLaMA-Factory ShareGPT, OpenAI messages) detected and
converted to one canonical row, bad rows refused with a clear reason, the mask checked token by token (the fallback
template of a model without tool support, and the model's own template through ``tools=``), and a LoRA SFT whose
loss falls."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from training.engine import ListCallback, run_training
from training.engine.data import (
    ChatRenderer,
    DatasetFormat,
    build_sft_dataset,
    detect_format,
    load_examples,
    to_canonical,
    tokenize_example,
)
from training.engine.errors import DataError

DATA = Path(__file__).resolve().parents[1] / "data"
SHAREGPT_TOOLS = DATA / "tool_calling_sharegpt.json"
MESSAGES_TOOLS = DATA / "tool_calling_messages.jsonl"

# A Hermes/Qwen-style template that renders `tools` itself (the embedded model's own template has no tool support).
HERMES_TOOL_TEMPLATE = (
    "{%- if tools %}{{ '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% else %}Hermes with tools.{% endif %}"
    "{{ '\\n<tools>' }}{% for tool in tools %}{{ tool | tojson }}{% endfor %}{{ '</tools><|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] == 'system' %}"
    "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' and loop.first %}"
    "{%- elif message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' + message['content'] }}"
    "{%- for call in message.tool_calls or [] %}<tool_call>{{ call.function | tojson }}</tool_call>{% endfor %}"
    "{{ '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{ '<|im_start|>user\\n<tool_response>' + message['content'] + '</tool_response><|im_end|>\\n' }}"
    "{%- else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(model_path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


def _rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sharegpt = json.loads(SHAREGPT_TOOLS.read_text())
    messages = [json.loads(line) for line in MESSAGES_TOOLS.read_text().splitlines()]
    return sharegpt, messages


def _without_ids(example: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(example)
    for m in out["messages"]:
        m.pop("tool_call_id", None)
        for call in m.get("tool_calls") or []:
            call.pop("id", None)
    return out


def test_both_layouts_are_detected_and_give_the_same_canonical_rows() -> None:
    sharegpt, messages = _rows()
    assert detect_format(sharegpt) is DatasetFormat.SHAREGPT_TOOLS
    assert detect_format(messages) is DatasetFormat.MESSAGES_TOOLS
    # one tool row among plain ones is enough; plain rows still read as the plain formats
    assert detect_format([*sharegpt[-2:] * 5, sharegpt[0]]) is DatasetFormat.SHAREGPT_TOOLS
    assert detect_format([{"conversations": sharegpt[-1]["conversations"]}]) is DatasetFormat.SHAREGPT
    assert detect_format([{"messages": messages[-1]["messages"]}]) is DatasetFormat.MESSAGES

    a = [to_canonical(r, DatasetFormat.SHAREGPT_TOOLS) for r in sharegpt]
    b = [_without_ids(to_canonical(r, DatasetFormat.MESSAGES_TOOLS)) for r in messages]
    assert a == b
    first = a[0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "tool", "assistant"]
    call = first["messages"][1]["tool_calls"][0]
    assert call == {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    assert first["messages"][2]["name"] == "get_weather"
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather", "calculator"]
    assert "tools" not in a[-1]  # a plain chat in a tool dataset


@pytest.mark.parametrize(
    ("turns", "tools", "message"),
    [
        (
            [
                ("human", "hi"),
                ("function_call", '{"name": "calculator", "arguments": {"expression": "1+1"'),
                ("observation", "2"),
                ("gpt", "2"),
            ],
            None,
            "not valid JSON",
        ),
        (
            [
                ("human", "hi"),
                ("function_call", '{"name": "calculator", "arguments": "{oops}"}'),
                ("observation", "2"),
                ("gpt", "2"),
            ],
            None,
            "arguments is not valid JSON",
        ),
        ([("human", "hi"), ("observation", "2"), ("gpt", "2")], None, "does not follow a tool call"),
        (
            [("human", "hi"), ("gpt", "2")],
            '[{"description": "no name"}]',
            "tools[0] must be an object with a non-empty 'name'",
        ),
        ([("human", "hi"), ("gpt", "2")], '"just text"', "'tools' must be a list"),
    ],
)
def test_bad_tool_rows_are_refused_with_the_reason(
    turns: list[tuple[str, str]], tools: str | None, message: str
) -> None:
    row: dict[str, Any] = {"conversations": [{"from": f, "value": v} for f, v in turns]}
    if tools is not None:
        row["tools"] = tools
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        to_canonical(row, DatasetFormat.SHAREGPT_TOOLS)


def _check_mask(tokenizer: Any, renderer: ChatRenderer, example: dict[str, Any], trained: list[str]) -> str:
    """Token by token: a token is trained exactly when it overlaps one of the ``trained`` pieces, found in the
    rendered text independently of the masking code (in order, each after the previous)."""
    tok = tokenize_example(tokenizer, example, max_length=4096, chat_template=renderer)
    text = renderer.render(example["messages"], tools=example.get("tools"))
    spans, cursor = [], 0
    for piece in trained:
        at = text.index(piece, cursor)
        spans.append((at, at + len(piece)))
        cursor = at + len(piece)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert tok.input_ids == enc["input_ids"]
    for t, ((s, e), label) in enumerate(zip(enc["offset_mapping"], tok.labels, strict=True)):
        expected = any(s < b and e > a for a, b in spans)
        assert (label != -100) == expected, (t, text[s:e], label)
        if expected:
            assert label == tok.input_ids[t]
    trained_text = tokenizer.decode([x for x in tok.labels if x != -100])
    assert trained_text == "".join(trained)
    return text


def test_fallback_template_trains_assistant_turns_and_calls_only(tokenizer: Any) -> None:
    sharegpt, _ = _rows()
    example = to_canonical(sharegpt[0], DatasetFormat.SHAREGPT_TOOLS)
    renderer = ChatRenderer(tokenizer)
    assert not renderer.supports_tools and renderer.tool_renderer() is not renderer
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
    text = _check_mask(tokenizer, renderer, example, [call, "It is 18 °C and cloudy in Paris.<|im_end|>"])
    assert "<tools>\n" in text and '"name": "calculator"' in text  # the tools list sits in the system block
    assert '<|im_start|>tool\n<tool_response>\n{"temperature": 18' in text  # the result: context only
    # a plain row of the same dataset keeps the model's own template
    plain = to_canonical(sharegpt[-1], DatasetFormat.SHAREGPT_TOOLS)
    assert renderer.render(plain["messages"]) == tokenizer.apply_chat_template(plain["messages"], tokenize=False)


def test_tools_capable_template_renders_through_apply_chat_template(tokenizer: Any) -> None:
    own = copy.deepcopy(tokenizer)
    own.chat_template = HERMES_TOOL_TEMPLATE
    _, messages = _rows()
    example = to_canonical(messages[2], DatasetFormat.MESSAGES_TOOLS)
    renderer = ChatRenderer(own)
    assert renderer.supports_tools and renderer.tool_renderer() is renderer
    text = renderer.render(example["messages"], tools=example["tools"])
    assert text == own.apply_chat_template(example["messages"], tools=example["tools"], tokenize=False)
    assert text.startswith("<|im_start|>system\nHermes with tools.\n<tools>")
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "17 * 23"}}</tool_call><|im_end|>'
    _check_mask(own, renderer, example, [call, "17 × 23 = 391.<|im_end|>"])


def test_lora_sft_on_tool_calls_lowers_the_loss(tmp_path: Path, make_spec: Any, tokenizer: Any) -> None:
    loaded = load_examples([str(SHAREGPT_TOOLS)])
    assert loaded.format is DatasetFormat.SHAREGPT_TOOLS and not loaded.row_errors
    rows, report = build_sft_dataset(loaded, tokenizer, max_length=512)
    assert report.eot_token == "<|im_end|>" and report.eot_trained_rows == len(rows) == 10
    # short rows for fast steps: 4 tool conversations, each listing only the tool it calls, without descriptions
    short = []
    for row in json.loads(SHAREGPT_TOOLS.read_text())[:4]:
        name = json.loads(row["conversations"][1]["value"])["name"]
        tools = [{"name": t["name"], "parameters": t["parameters"]} for t in json.loads(row["tools"])]
        short.append({**row, "tools": json.dumps([t for t in tools if t["name"] == name])})
    path = tmp_path / "tools_short.json"
    path.write_text(json.dumps(short))
    spec = make_spec(
        tmp_path / "run",
        path,
        hyper={"max_steps": 6, "max_length": 320, "per_device_train_batch_size": 2, "learning_rate": 2e-3},
    )
    events = ListCallback()
    result = run_training(spec, [events])
    assert result.status == "succeeded" and result.data["format"] == "sharegpt_tools", result
    values = [m.loss for m in events.metrics]
    assert len(values) == 6 and mean(values[-2:]) < mean(values[:2]) - 0.05, values
