"""Tool-calling conversations: the ShareGPT layout of LLaMA-Factory (``function_call`` / ``observation`` turns and a
``tools`` column) and OpenAI-style ``messages`` (assistant ``tool_calls``, ``tool`` turns, a ``tools`` list), both
converted to one canonical row::

    {"messages": [
        {"role": "system" | "user", "content": str},
        {"role": "assistant", "content": str,
         "tool_calls": [{"type": "function", "function": {"name": str, "arguments": {...}}, "id"?: str}]},
        {"role": "tool", "content": str, "name"?: str, "tool_call_id"?: str},
        ...],
     "tools": [{"type": "function", "function": {"name": str, "description"?: str, "parameters"?: {...}}}]}

``tool_calls`` is present only on assistant turns that call tools (their ``content`` may then be empty) and
``tools`` only when the row lists tools. Arguments are always JSON objects (strings are parsed; text that is not
valid JSON is refused with the turn it is in). Turn order: an optional system message, then ``user`` ->
``assistant``; an assistant turn with calls is followed by one or more ``tool`` turns, then an assistant turn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from training.engine.errors import DataError

from .messages import ROLE_ALIASES, column, role_of, text_field, with_system

SHAREGPT_TOOL_ROLES: dict[str, str] = {
    "function_call": "assistant_call",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
    "tool_call": "assistant_call",
}
"""ShareGPT roles of tool turns (LLaMA-Factory's names first) -> canonical role ("assistant_call": a call turn)."""


def _loads(value: str, what: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} is not valid JSON ({exc.msg} at character {exc.pos}): {value[:80]!r}") from None


def parse_tools(value: Any, field: str = "tools") -> list[dict[str, Any]]:
    """Canonical tool specs from a list (or a JSON string holding one, as LLaMA-Factory stores it): each item is
    ``{"name", "description"?, "parameters"?}`` or OpenAI's ``{"type": "function", "function": {...}}``.

    None, "" and [] mean no tools. Anything else raises ``DataError``."""
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, str):
        value = _loads(value, f"'{field}'")
        if value is None or value == []:
            return []
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise DataError(
            f"'{field}' must be a list of tool specs (objects with a 'name'), found {type(value).__name__}."
        )
    out: list[dict[str, Any]] = []
    for i, spec in enumerate(value):
        fn = spec.get("function") if isinstance(spec, Mapping) and isinstance(spec.get("function"), Mapping) else spec
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise DataError(f"{field}[{i}] must be an object with a non-empty 'name' (a function spec).")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, Mapping):
            raise DataError(f"{field}[{i}].parameters must be a JSON schema object.")
        out.append({"type": "function", "function": dict(fn)})
    return out


def tool_names(tools: Sequence[Mapping[str, Any]]) -> set[str]:
    """The names of canonical tool specs."""
    return {str(t["function"]["name"]) for t in tools}


def parse_call(value: Any, where: str) -> dict[str, Any]:
    """One canonical tool call from ``{"name", "arguments"}`` or ``{"type": "function", "function": {...}, "id"}``;
    arguments given as a string must be a JSON object."""
    if not isinstance(value, Mapping):
        raise DataError(f"{where} must be an object with 'name' and 'arguments'.")
    fn = value.get("function") if isinstance(value.get("function"), Mapping) else value
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"{where} has no function name.")
    args = fn.get("arguments", fn.get("parameters", {}))
    if isinstance(args, str):
        args = _loads(args, f"{where} arguments") if args.strip() else {}
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise DataError(f"{where} arguments must be a JSON object, found {type(args).__name__}.")
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": dict(args)}}
    if isinstance(value.get("id"), str):
        call["id"] = value["id"]
    return call


def _calls(value: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        value = _loads(value, where)
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise DataError(f"{where} holds no call.")
    return [parse_call(item, f"{where}[{k}]" if len(items) > 1 else where) for k, item in enumerate(items)]


def check_tool_conversation(messages: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Validate the turn order of a tool-calling conversation (see the module docstring); merge leading system
    messages, drop trailing user/tool turns and require a non-empty assistant turn (a call counts)."""
    i = 0
    while i < len(messages) and messages[i]["role"] == "system":
        i += 1
    if i > 1:
        merged = "\n\n".join(m["content"] for m in messages[:i])
        messages = [{"role": "system", "content": merged}, *messages[i:]]
        i = 1
    prev = "start"
    for j in range(i, len(messages)):
        m = messages[j]
        role = "assistant_call" if m["role"] == "assistant" and m.get("tool_calls") else m["role"]
        if role == "tool":
            if prev not in ("assistant_call", "tool"):
                raise DataError(
                    f"{field}: turn {j} is a tool result that does not follow a tool call "
                    "(a tool/observation turn must come right after the assistant turn that calls the tool)."
                )
        elif role == "user":
            if prev not in ("start", "assistant"):
                want = "a tool result" if prev == "assistant_call" else "an assistant turn"
                raise DataError(f"{field}: roles out of order at turn {j}: expected {want}, found 'user'.")
        elif role in ("assistant", "assistant_call"):
            if prev not in ("user", "tool"):
                found = "a tool call" if role == "assistant_call" else "'assistant'"
                expected = "a tool result" if prev == "assistant_call" else "'user'"
                raise DataError(f"{field}: roles out of order at turn {j}: expected {expected}, found {found}.")
        else:
            raise DataError(f"{field}: roles out of order at turn {j}: a system message may only come first.")
        prev = role
    while messages and messages[-1]["role"] in ("user", "tool"):
        messages = messages[:-1]
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{field}: the conversation has no assistant turn to train on.")
    for j, m in enumerate(messages):
        if m["role"] == "assistant" and not m.get("tool_calls") and not m["content"].strip():
            raise DataError(f"{field}: assistant turn {j} is empty.")
    return messages


def _row_tools(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    return parse_tools(row.get("tools"), "tools")


def _finish(messages: list[dict[str, Any]], tools: list[dict[str, Any]], field: str) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": check_tool_conversation(messages, field)}
    if tools:
        out["tools"] = tools
    return out


def sharegpt_tools(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    """LLaMA-Factory's ShareGPT tool layout: ``conversations`` of ``{from, value}`` with roles human / gpt /
    function_call (value: JSON ``{"name", "arguments"}`` or a list of them) / observation, plus ``tools`` and
    ``system`` columns."""
    raw = column(row, "conversations")
    if not isinstance(raw, (list, tuple)):
        raise DataError(f"'conversations' must be a list of messages, found {type(raw).__name__}.")
    messages: list[dict[str, Any]] = []
    last_calls: list[dict[str, Any]] = []
    for i, msg in enumerate(raw):
        where = f"conversations[{i}]"
        if not isinstance(msg, Mapping):
            raise DataError(f"{where} must be an object with from and value, found {type(msg).__name__}.")
        rk = "from" if "from" in msg else "role" if "role" in msg else None
        ck = "value" if "value" in msg else "content" if "content" in msg else None
        if rk is None or ck is None:
            raise DataError(f"{where} needs 'from'/'value' or 'role'/'content' keys (found: {', '.join(msg)}).")
        name = str(msg[rk]).strip().lower() if isinstance(msg[rk], str) else ""
        kind = SHAREGPT_TOOL_ROLES.get(name) or ROLE_ALIASES.get(name)
        if kind is None:
            raise DataError(
                f"{where} has role {msg[rk]!r}; supported roles: human/user, gpt/assistant, system, "
                "function_call, observation."
            )
        if kind == "assistant_call":
            last_calls = _calls(msg[ck], f"{where} (function_call)")
            messages.append({"role": "assistant", "content": "", "tool_calls": last_calls})
        elif kind == "tool":
            content = msg[ck]
            if not isinstance(content, str):
                content = json.dumps(content, ensure_ascii=False)
            result: dict[str, Any] = {"role": "tool", "content": content}
            if len(last_calls) == 1:
                result["name"] = last_calls[0]["function"]["name"]
            messages.append(result)
        else:
            messages.append({"role": kind, "content": text_field(msg[ck], f"{where}.{ck}")})
    system = row.get("system")
    system = text_field(system, "system", required=False) if system is not None else ""
    return _finish(with_system(messages, system or system_prompt), _row_tools(row), "conversations")  # type: ignore[arg-type]


def messages_tools(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    """OpenAI-style ``messages``: ``{role, content}`` with assistant ``tool_calls`` (arguments as a JSON string or
    an object), ``tool`` turns (``tool_call_id``, ``name``) and a ``tools`` column."""
    raw = column(row, "messages")
    if not isinstance(raw, (list, tuple)):
        raise DataError(f"'messages' must be a list of messages, found {type(raw).__name__}.")
    messages: list[dict[str, Any]] = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, Mapping) or "role" not in msg:
            raise DataError(f"{where} must be an object with role and content.")
        role = msg["role"].strip().lower() if isinstance(msg["role"], str) else msg["role"]
        content = msg.get("content")
        if role in ("tool", "function", "ipython"):
            if not isinstance(content, str):
                content = "" if content is None else json.dumps(content, ensure_ascii=False)
            out: dict[str, Any] = {"role": "tool", "content": content}
            for key in ("name", "tool_call_id"):
                if isinstance(msg.get(key), str):
                    out[key] = msg[key]
            messages.append(out)
            continue
        canonical = role_of(role, i, "messages")
        text = text_field(content, f"{where}.content", required=False)
        item: dict[str, Any] = {"role": canonical, "content": text}
        calls = msg.get("tool_calls")
        if calls:
            if canonical != "assistant":
                raise DataError(f"{where}: only assistant turns may hold tool_calls.")
            if not isinstance(calls, (list, tuple)):
                raise DataError(f"{where}.tool_calls must be a list of calls.")
            item["tool_calls"] = [parse_call(c, f"{where}.tool_calls[{k}]") for k, c in enumerate(calls)]
        messages.append(item)
    return _finish(with_system(messages, system_prompt), _row_tools(row), "messages")  # type: ignore[arg-type]


def has_tool_content(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a conversation holds tool calls or tool results."""
    return any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)


def is_sharegpt_tool_row(row: Mapping[str, Any]) -> bool:
    """A ``conversations`` row with a non-empty ``tools`` column or function_call / observation turns."""
    if row.get("tools") not in (None, "", "[]", []):
        return True
    conv = row.get("conversations")
    if not isinstance(conv, (list, tuple)):
        return False
    for m in conv:
        if isinstance(m, Mapping):
            who = m.get("from", m.get("role"))
            if isinstance(who, str) and who.strip().lower() in SHAREGPT_TOOL_ROLES:
                return True
    return False


def is_messages_tool_row(row: Mapping[str, Any]) -> bool:
    """A ``messages`` row with a non-empty ``tools`` column, assistant ``tool_calls`` or ``tool`` turns."""
    if row.get("tools") not in (None, "", "[]", []):
        return True
    msgs = row.get("messages")
    if not isinstance(msgs, (list, tuple)):
        return False
    return any(
        isinstance(m, Mapping) and (m.get("tool_calls") or m.get("role") in ("tool", "function", "ipython"))
        for m in msgs
    )


def tool_calls_text(message: Mapping[str, Any]) -> str:
    """The calls of an assistant turn as text (for statistics and duplicate checks)."""
    calls = message.get("tool_calls") or []
    return "".join(json.dumps(c.get("function", c), ensure_ascii=False, sort_keys=True) for c in calls)
