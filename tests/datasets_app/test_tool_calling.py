"""Tool-calling datasets over the API: both layouts (LLaMA-Factory ShareGPT with function_call / observation turns and
a tools column; OpenAI messages with tool_calls, tool turns and a tools list) are detected and validated, the preview
marks the calls trained and the results not, and bad rows are reported with their line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets_app import processing
from datasets_app.models import Dataset

pytestmark = pytest.mark.django_db

DATA = Path(__file__).resolve().parents[1] / "data"


def _upload_and_process(client, path: Path) -> Dataset:
    with open(path, "rb") as fh:
        r = client.post("/api/datasets/", {"file": fh}, format="multipart")
    assert r.status_code == 201, r.content
    ds = Dataset.objects.get(pk=r.json()["id"])
    processing.process_dataset(ds.pk, str(ds.run_token))
    ds.refresh_from_db()
    return ds


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [("tool_calling_sharegpt.json", "sharegpt_tools"), ("tool_calling_messages.jsonl", "messages_tools")],
)
def test_both_tool_layouts_are_detected_validated_and_previewed(auth_client, media_root, filename, fmt):
    ds = _upload_and_process(auth_client, DATA / filename)
    assert ds.status == "ready", ds.error
    assert ds.format == fmt and ds.row_count == 10
    report = auth_client.get(f"/api/datasets/{ds.pk}/report/").json()
    assert report["verdict"] == "ok" and report["format_detected"] and report["errors"] == []
    assert report["tool_calling"] == {"rows": 8, "calls": 8, "results": 8}
    assert report["statistics"]["roles"]["tool"] == 8
    body = auth_client.get(f"/api/datasets/{ds.pk}/preview/?limit=1").json()
    row = body["results"][0]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert row["messages"][1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert [t["function"]["name"] for t in row["tools"]] == ["get_weather", "calculator"]
    trained = [s["text"] for s in row["segments"] if s["trained"]]
    assert trained == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "It is 18 °C and cloudy in Paris.<|im_end|>",
    ]
    context = "".join(s["text"] for s in row["segments"] if not s["trained"])
    assert "<tool_response>" in context and "<tools>" in context


def test_bad_tool_rows_are_reported_with_their_lines(auth_client, media_root, tmp_path):
    tools = json.dumps([{"name": "calculator", "parameters": {"type": "object"}}])

    def row(*turns: tuple[str, str]) -> str:
        return json.dumps({"conversations": [{"from": f, "value": v} for f, v in turns], "tools": tools})

    call = json.dumps({"name": "calculator", "arguments": {"expression": "1+1"}})
    lines = [
        row(("human", "1+1?"), ("function_call", call), ("observation", "2"), ("gpt", "It is 2.")),
        row(("human", "1+1?"), ("function_call", call[:-2]), ("observation", "2"), ("gpt", "It is 2.")),
        row(("human", "1+1?"), ("observation", "2"), ("gpt", "It is 2.")),
        row(
            ("human", "Oslo?"),
            ("function_call", '{"name": "weather", "arguments": {}}'),
            ("observation", "x"),
            ("gpt", "Cold."),
        ),
    ]
    path = tmp_path / "tools_bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ds = _upload_and_process(auth_client, path)
    report = auth_client.get(f"/api/datasets/{ds.pk}/report/").json()
    assert report["format"] == "sharegpt_tools" and report["verdict"] == "invalid"
    errors = {e["line"]: e["message"] for e in report["errors"]}
    assert set(errors) == {2, 3}
    assert "not valid JSON" in errors[2] and "function_call" in errors[2]
    assert "does not follow a tool call" in errors[3]
    (unknown,) = [w for w in report["warnings"] if w["code"] == "tool_unknown"]
    assert unknown["lines"] == [4]
    assert report["tool_calling"] == {"rows": 2, "calls": 2, "results": 2}
