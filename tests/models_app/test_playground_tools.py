"""The playground with a tools list: the `tools` field is checked (shape and size) before anything is queued, the
prompt lists the tools the way tool-calling data is trained (the fallback template on the embedded model), and one
real greedy generation on the embedded model returns its `<tool_call>` blocks as structured calls when it makes any."""

from __future__ import annotations

import pytest

from models_app import inference
from models_app.inference import InvalidRequest, ModelRef, parse_request, parse_tool_calls, render_prompt

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


def test_tools_are_canonicalised_and_travel_to_the_worker():
    req = parse_request({"messages": ASK, "tools": [WEATHER]})
    assert req.tools == ({"type": "function", "function": WEATHER},)
    assert parse_request(req.to_dict()) == req
    assert parse_request({"messages": ASK}).tools == () and "tools" not in parse_request({"messages": ASK}).to_dict()


@pytest.mark.parametrize(
    ("tools", "needle"),
    [
        ({"name": "x"}, "must be a list"),
        ("[]", "must be a list"),
        ([{"description": "no name"}], "non-empty 'name'"),
        ([{"name": "f", "parameters": "object"}], "parameters must be a JSON schema object"),
        ([{"name": f"f{i}"} for i in range(33)], "Too many tools (33)"),
        ([{"name": "f", "description": "x" * 40_000}], "tools list is too long"),
    ],
)
def test_bad_tools_get_a_clear_message_naming_the_field(tools, needle):
    with pytest.raises(InvalidRequest) as err:
        parse_request({"messages": ASK, "tools": tools})
    assert err.value.field == "tools" and needle in err.value.message


@pytest.mark.django_db
def test_rest_generate_rejects_bad_tools_with_a_400(auth_client):
    from models_app.models import BaseModel

    base = BaseModel.objects.ensure_embedded()
    r = auth_client.post(
        f"/api/models/base/{base.pk}/generate/", {"messages": ASK, "tools": [{"oops": 1}]}, format="json"
    )
    assert r.status_code == 400 and "tools" in r.json()["errors"], r.content
    assert "name" in r.json()["detail"]


def test_tool_calls_are_parsed_from_the_answer():
    text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert parse_tool_calls(text) == [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert parse_tool_calls('<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}') == [
        {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    ]
    assert parse_tool_calls("<tool_call>not json</tool_call> plain text") == []


def test_a_real_generation_with_tools_on_the_embedded_model():
    from training.engine.embedded import embedded_model_path

    loaded = inference.load_model(ModelRef(key="tools", base_path=embedded_model_path()))
    request = parse_request({"messages": ASK, "tools": [WEATHER], "temperature": 0, "max_new_tokens": 8})
    prompt = render_prompt(loaded.tokenizer, request.chat(), request.tools)
    assert "<tools>\n" in prompt and '"name": "get_weather"' in prompt
    assert prompt.endswith("<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n<|im_start|>assistant\n")
    generation = inference.Generation(loaded, request)
    text = generation.run()
    assert text and generation.tokens > 0
    assert generation.tool_calls == parse_tool_calls(text)  # structured whenever the model wrote a valid call


def test_a_tool_result_turn_is_answered_with_the_tools_and_rendered_as_a_tool_response():
    from transformers import AutoTokenizer

    from training.engine.embedded import embedded_model_path

    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    turns = [*ASK, {"role": "assistant", "content": call}, {"role": "tool", "content": '{"temperature": 18}'}]
    req = parse_request({"messages": turns, "tools": [WEATHER]})
    assert req.chat()[-1] == {"role": "tool", "content": '{"temperature": 18}'}
    assert parse_request(req.to_dict()) == req
    prompt = render_prompt(AutoTokenizer.from_pretrained(embedded_model_path()), req.chat(), req.tools)
    # The call as the model wrote it, then the result the way tool-calling data is trained, then the answer's turn.
    assert prompt.endswith(
        f"<|im_start|>assistant\n{call}<|im_end|>\n"
        '<|im_start|>tool\n<tool_response>\n{"temperature": 18}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
    )
    with pytest.raises(InvalidRequest, match="send the `tools`"):
        parse_request({"messages": turns})
    with pytest.raises(InvalidRequest, match="must follow the assistant turn"):
        parse_request({"messages": [*ASK, {"role": "tool", "content": "18"}], "tools": [WEATHER]})
