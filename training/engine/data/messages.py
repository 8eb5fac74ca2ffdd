"""Fields and messages of a dataset row: text coercion, role names, message lists and turn-order checks, shared by the
SFT and preference format converters (``formats``, ``preference_formats``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from training.engine.errors import DataError

Message = dict[str, str]

ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "developer": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
}


def text_field(value: Any, field: str, *, required: bool = True) -> str:
    """Coerce a field to a string: numbers and booleans become text, None is missing, containers are refused."""
    if isinstance(value, str):
        return value
    if value is None:
        if required:
            raise DataError(f"'{field}' is missing (null).")
        return ""
    if isinstance(value, (int, float)):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, (list, tuple)) and all(isinstance(p, Mapping) for p in value):
        parts = [p.get("text") for p in value if p.get("type", "text") == "text"]
        if len(parts) == len(value) and all(isinstance(p, str) for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
        raise DataError(f"'{field}' holds non-text content parts (images, audio, tools), which are not supported.")
    kind = "a list" if isinstance(value, (list, tuple)) else "an object" if isinstance(value, Mapping) else "a value"
    raise DataError(f"'{field}' must be text, found {kind}.")


def column(row: Mapping[str, Any], *names: str, required: bool = True) -> Any:
    for name in names:
        if name in row:
            return row[name]
    if required:
        raise DataError(f"missing column '{names[0]}' (columns: {', '.join(map(str, row.keys())) or 'none'}).")
    return None


def role_of(raw: Any, index: int, field: str) -> str:
    role = ROLE_ALIASES.get(str(raw).strip().lower()) if isinstance(raw, str) else None
    if role is None:
        raise DataError(
            f"{field}[{index}] has role {raw!r}; supported roles: human/user, gpt/assistant, system "
            "(tool-calling conversations use the formats sharegpt_tools and messages_tools)."
        )
    return role


def message_list(
    value: Any, field: str, *, role_key: str | None = None, content_key: str | None = None
) -> list[Message]:
    """Convert a list of ``{from, value}`` or ``{role, content}`` dicts into canonical messages (roles unchecked)."""
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise DataError(f"'{field}' must be a list of messages, found {type(value).__name__}.")
    out: list[Message] = []
    for i, msg in enumerate(value):
        if not isinstance(msg, Mapping):
            raise DataError(f"{field}[{i}] must be an object with role and content, found {type(msg).__name__}.")
        rk = role_key or ("role" if "role" in msg else "from" if "from" in msg else None)
        ck = content_key or ("content" if "content" in msg else "value" if "value" in msg else None)
        if rk is None or rk not in msg or ck is None or ck not in msg:
            raise DataError(f"{field}[{i}] needs 'from'/'value' or 'role'/'content' keys (found: {', '.join(msg)}).")
        out.append({"role": role_of(msg[rk], i, field), "content": text_field(msg[ck], f"{field}[{i}].{ck}")})
    return out


def check_conversation(messages: list[Message], field: str, *, final: str | None = "assistant") -> list[Message]:
    """Validate turn order: optional leading system, then user/assistant alternating from user.

    Trailing user turns (nothing to learn from them) are dropped when ``final`` is "assistant".
    """
    i = 0
    while i < len(messages) and messages[i]["role"] == "system":
        i += 1
    if i > 1:  # several leading system messages: merge them into one
        merged = "\n\n".join(m["content"] for m in messages[:i])
        messages = [{"role": "system", "content": merged}, *messages[i:]]
        i = 1
    expected = "user"
    for j in range(i, len(messages)):
        role = messages[j]["role"]
        if role != expected:
            got = "a system message" if role == "system" else f"'{role}'"
            raise DataError(
                f"{field}: roles out of order at turn {j}: expected '{expected}', found {got} "
                "(turns must alternate user/assistant, starting with user, after an optional system message)."
            )
        expected = "assistant" if role == "user" else "user"
    if final == "assistant":
        while messages and messages[-1]["role"] == "user":
            messages = messages[:-1]
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{field}: the conversation has no assistant turn to train on.")
        for j, m in enumerate(messages):
            if m["role"] == "assistant" and not m["content"].strip():
                raise DataError(f"{field}: assistant turn {j} is empty.")
    elif final == "user":
        if not messages or messages[-1]["role"] != "user":
            raise DataError(f"{field}: the prompt must end with a user turn.")
    return messages


def with_system(messages: list[Message], system: str | None) -> list[Message]:
    if system and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system}, *messages]
    return messages
