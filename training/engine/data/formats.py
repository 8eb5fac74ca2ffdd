"""Dataset formats: detection from the columns, column mapping, and conversion to one canonical shape.

Canonical shapes (what the trainers and TRL consume):

* SFT formats -> ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``
* TEXT -> ``{"text": str}``
* preference formats -> TRL's conversational preference format
  ``{"prompt": [messages...], "chosen": [{"role": "assistant", ...}], "rejected": [{"role": "assistant", ...}]}``
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from training.engine.errors import DataError

Message = dict[str, str]


class DatasetFormat(StrEnum):
    """The dataset layouts the engine understands."""

    ALPACA = "alpaca"
    SHAREGPT = "sharegpt"
    MESSAGES = "messages"
    PROMPT_COMPLETION = "prompt_completion"
    TEXT = "text"
    PREFERENCE = "preference"
    HH_RLHF = "hh_rlhf"
    SHAREGPT_PREFERENCE = "sharegpt_preference"


PREFERENCE_FORMATS = frozenset({DatasetFormat.PREFERENCE, DatasetFormat.HH_RLHF, DatasetFormat.SHAREGPT_PREFERENCE})

EXPECTED_COLUMNS: dict[DatasetFormat, str] = {
    DatasetFormat.ALPACA: "instruction, output[, input, system, history]",
    DatasetFormat.SHAREGPT: "conversations[, system]",
    DatasetFormat.MESSAGES: "messages",
    DatasetFormat.PROMPT_COMPLETION: "prompt, completion",
    DatasetFormat.TEXT: "text",
    DatasetFormat.PREFERENCE: "prompt, chosen, rejected",
    DatasetFormat.HH_RLHF: "chosen, rejected (whole '\\n\\nHuman: ... \\n\\nAssistant: ...' transcripts)",
    DatasetFormat.SHAREGPT_PREFERENCE: "conversations, chosen, rejected",
}

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


def is_preference(fmt: DatasetFormat | str) -> bool:
    """True for the formats that hold chosen/rejected pairs (DPO, ORPO)."""
    return DatasetFormat(fmt) in PREFERENCE_FORMATS


def parse_format(fmt: DatasetFormat | str | None) -> DatasetFormat | None:
    """Turn a format name into a ``DatasetFormat`` (None and "auto" mean detect); unknown names raise ``DataError``."""
    if fmt is None or isinstance(fmt, DatasetFormat):
        return fmt
    name = str(fmt).strip().lower().replace("-", "_")
    if name in ("", "auto"):
        return None
    try:
        return DatasetFormat(name)
    except ValueError:
        valid = ", ".join(f.value for f in DatasetFormat)
        raise DataError(f"Unknown dataset format '{fmt}'. Valid formats: auto, {valid}.") from None


# --- column mapping -----------------------------------------------------------------------------------------------


def get_path(row: Mapping[str, Any], path: str) -> Any:
    """Read a dotted path with list indexes (``"instances.0.input"``, ``"messages.-1.content"``) from a row.

    A key that literally contains dots is found too. Raises ``DataError`` naming the path and the part that is missing.
    """
    if path in row:
        return row[path]
    current: Any = row
    walked: list[str] = []
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                keys = ", ".join(map(str, list(current)[:20])) or "none"
                where = f"'{'.'.join(walked)}'" if walked else "the row"
                raise DataError(f"column path '{path}': {where} has no key '{part}' (keys: {keys}).")
            current = current[part]
        elif isinstance(current, (list, tuple)):
            try:
                index = int(part)
            except ValueError:
                raise DataError(
                    f"column path '{path}': '{'.'.join(walked)}' is a list, so '{part}' must be an index like 0."
                ) from None
            if not -len(current) <= index < len(current):
                raise DataError(
                    f"column path '{path}': '{'.'.join(walked)}' has {len(current)} item(s), no index {index}."
                )
            current = current[index]
        else:
            kind = "null" if current is None else type(current).__name__
            raise DataError(f"column path '{path}': '{'.'.join(walked)}' is {kind}, it has no '{part}'.")
        walked.append(part)
    return current


def apply_column_mapping(row: Mapping[str, Any], mapping: Mapping[str, str], *, where: str = "") -> dict[str, Any]:
    """Build a row holding only the mapped fields: ``{target: get_path(row, source)}``.

    A source ending in ``?`` is optional: a missing path gives no field instead of an error. ``where`` (for example
    "data.jsonl line 5") prefixes error messages.
    """
    out: dict[str, Any] = {}
    for target, source in mapping.items():
        optional = source.endswith("?")
        src = source[:-1] if optional else source
        try:
            out[target] = get_path(row, src)
        except DataError as exc:
            if optional:
                continue
            raise DataError(f"{where + ': ' if where else ''}{exc} (mapping '{target}' <- '{source}')") from None
    return out


def validate_column_mapping(mapping: Mapping[str, str] | None) -> dict[str, str]:
    """Check a user-supplied mapping's shape (str -> non-empty str); raise ``DataError`` otherwise."""
    if not mapping:
        return {}
    if not isinstance(mapping, Mapping):
        raise DataError("column_mapping must be an object of target field -> source path.")
    out: dict[str, str] = {}
    for target, source in mapping.items():
        if not isinstance(target, str) or not target or not isinstance(source, str) or not source.strip("?"):
            raise DataError(f"column_mapping entry {target!r}: {source!r} must map a field name to a source path.")
        out[target] = source
    return out


# --- detection ----------------------------------------------------------------------------------------------------


def _row_format(row: Mapping[str, Any]) -> DatasetFormat | None:
    keys = row.keys()
    if "chosen" in keys and "rejected" in keys:
        if "conversations" in keys:
            return DatasetFormat.SHAREGPT_PREFERENCE
        if "prompt" in keys:
            return DatasetFormat.PREFERENCE
        chosen = row["chosen"]
        if isinstance(chosen, str):
            return DatasetFormat.HH_RLHF
        return DatasetFormat.PREFERENCE
    if "conversations" in keys:
        return DatasetFormat.SHAREGPT
    if "messages" in keys:
        return DatasetFormat.MESSAGES
    if "instruction" in keys and ("output" in keys or "response" in keys):
        return DatasetFormat.ALPACA
    if "prompt" in keys and "completion" in keys:
        return DatasetFormat.PROMPT_COMPLETION
    if "text" in keys:
        return DatasetFormat.TEXT
    return None


def detect_format(rows: Sequence[Mapping[str, Any]]) -> DatasetFormat:
    """Detect the format from a sample of rows (the first ~100); the majority wins.

    Raises ``DataError`` listing the columns seen and the columns each format expects when nothing matches.
    """
    votes: Counter[DatasetFormat] = Counter()
    columns: dict[str, None] = {}
    for row in rows[:100]:
        if not isinstance(row, Mapping):
            continue
        columns.update(dict.fromkeys(map(str, row.keys())))
        fmt = _row_format(row)
        if fmt is not None:
            votes[fmt] += 1
    if votes:
        return votes.most_common(1)[0][0]
    expected = "; ".join(f"{fmt.value} ({cols})" for fmt, cols in EXPECTED_COLUMNS.items())
    seen = ", ".join(list(columns)[:30]) or "none"
    raise DataError(
        f"Cannot detect the format: columns found: {seen}. Expected one of: {expected}. "
        "Provide a column_mapping (target field -> source path, e.g. "
        '{"instruction": "question", "output": "answers.0.text"}) or choose the format explicitly.'
    )


# --- conversion ---------------------------------------------------------------------------------------------------


def _text(value: Any, field: str, *, required: bool = True) -> str:
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


def _field(row: Mapping[str, Any], *names: str, required: bool = True) -> Any:
    for name in names:
        if name in row:
            return row[name]
    if required:
        raise DataError(f"missing column '{names[0]}' (columns: {', '.join(map(str, row.keys())) or 'none'}).")
    return None


def _role(raw: Any, index: int, field: str) -> str:
    role = ROLE_ALIASES.get(str(raw).strip().lower()) if isinstance(raw, str) else None
    if role is None:
        raise DataError(
            f"{field}[{index}] has role {raw!r}; supported roles: human/user, gpt/assistant, system "
            "(tool and function turns are not supported)."
        )
    return role


def _message_list(
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
        out.append({"role": _role(msg[rk], i, field), "content": _text(msg[ck], f"{field}[{i}].{ck}")})
    return out


def _check_conversation(messages: list[Message], field: str, *, final: str | None = "assistant") -> list[Message]:
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


def _with_system(messages: list[Message], system: str | None) -> list[Message]:
    if system and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system}, *messages]
    return messages


def _alpaca(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    instruction = _text(_field(row, "instruction"), "instruction", required=False)
    extra = _text(_field(row, "input", "context", required=False), "input", required=False)
    output = _text(_field(row, "output", "response"), "output")
    user = f"{instruction}\n\n{extra}" if instruction.strip() and extra.strip() else instruction or extra
    if not user.strip():
        raise DataError("'instruction' and 'input' are both empty.")
    if not output.strip():
        raise DataError("'output' is empty: there is nothing to train on.")
    messages: list[Message] = []
    system = row.get("system")
    if system is not None:
        system = _text(system, "system", required=False)
    if system or system_prompt:
        messages.append({"role": "system", "content": system or system_prompt or ""})
    history = row.get("history")
    if history:
        if not isinstance(history, (list, tuple)):
            raise DataError("'history' must be a list of [instruction, response] pairs.")
        for i, pair in enumerate(history):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise DataError(f"history[{i}] must be an [instruction, response] pair.")
            messages.append({"role": "user", "content": _text(pair[0], f"history[{i}][0]")})
            messages.append({"role": "assistant", "content": _text(pair[1], f"history[{i}][1]")})
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": output})
    return {"messages": messages}


def _sharegpt(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    messages = _message_list(_field(row, "conversations"), "conversations")
    system = row.get("system")
    system = _text(system, "system", required=False) if system is not None else ""
    messages = _with_system(messages, system or system_prompt)
    return {"messages": _check_conversation(messages, "conversations")}


def _messages(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    messages = _message_list(_field(row, "messages"), "messages")
    return {"messages": _check_conversation(_with_system(messages, system_prompt), "messages")}


def _prompt_completion(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    prompt, completion = _field(row, "prompt"), _field(row, "completion")
    if isinstance(prompt, (list, tuple)):
        prompt_msgs = _message_list(prompt, "prompt")
    else:
        prompt_msgs = [{"role": "user", "content": _text(prompt, "prompt")}]
    if isinstance(completion, (list, tuple, Mapping)):
        completion_msgs = _message_list(completion, "completion")
    else:
        completion_msgs = [{"role": "assistant", "content": _text(completion, "completion")}]
    messages = _with_system(prompt_msgs + completion_msgs, system_prompt)
    if not any(m["content"].strip() for m in prompt_msgs):
        raise DataError("'prompt' is empty.")
    return {"messages": _check_conversation(messages, "prompt/completion")}


def _text_row(row: Mapping[str, Any], _system_prompt: str | None) -> dict[str, Any]:
    text = _text(_field(row, "text"), "text")
    if not text.strip():
        raise DataError("'text' is empty.")
    return {"text": text}


def _responses(value: Any, field: str) -> list[Message]:
    if isinstance(value, (list, tuple, Mapping)):
        msgs = _message_list(value, field)
    else:
        msgs = [{"role": "assistant", "content": _text(value, field)}]
    if not msgs or msgs[0]["role"] != "assistant":
        raise DataError(f"'{field}' must start with an assistant turn.")
    return msgs  # an empty response is a legitimate choice (HH-RLHF prefers silence over harm in a few rows)


def _finish_preference(prompt: list[Message], chosen: list[Message], rejected: list[Message]) -> dict[str, Any]:
    prompt = _check_conversation(prompt, "prompt", final="user")
    if chosen == rejected:
        raise DataError("'chosen' and 'rejected' are identical: the pair teaches nothing.")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _split_common_prefix(
    chosen: list[Message], rejected: list[Message]
) -> tuple[list[Message], list[Message], list[Message]]:
    """Implicit prompt: the shared turns up to the last user turn before the two transcripts diverge."""
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    while k > 0 and chosen[k - 1]["role"] != "user":
        k -= 1
    if k == 0:
        raise DataError("'chosen' and 'rejected' share no prompt ending in a user turn.")
    return chosen[:k], chosen[k:], rejected[k:]


def _preference(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    chosen_raw, rejected_raw = _field(row, "chosen"), _field(row, "rejected")
    system = row.get("system")
    system = _text(system, "system", required=False) if system is not None else ""
    if "prompt" in row:
        prompt_raw = row["prompt"]
        if isinstance(prompt_raw, (list, tuple)):
            prompt = _message_list(prompt_raw, "prompt")
        else:
            prompt = [{"role": "user", "content": _text(prompt_raw, "prompt")}]
        chosen, rejected = _responses(chosen_raw, "chosen"), _responses(rejected_raw, "rejected")
    else:
        if not isinstance(chosen_raw, (list, tuple)) or not isinstance(rejected_raw, (list, tuple)):
            raise DataError("without a 'prompt' column, 'chosen' and 'rejected' must be whole conversations.")
        prompt, chosen, rejected = _split_common_prefix(
            _message_list(chosen_raw, "chosen"), _message_list(rejected_raw, "rejected")
        )
    return _finish_preference(_with_system(prompt, system or system_prompt), chosen, rejected)


_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def split_hh_transcript(transcript: str, field: str = "transcript") -> list[Message]:
    """Split an Anthropic HH transcript (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) into messages.

    Consecutive turns of the same speaker (a transcript that was not cleanly split) are merged into one turn.
    """
    if not isinstance(transcript, str):
        raise DataError(f"'{field}' must be a '\\n\\nHuman: ... \\n\\nAssistant: ...' transcript string.")
    text = transcript if transcript.startswith("\n\n") else "\n\n" + transcript.lstrip("\n")
    parts = _HH_TURN.split(text)
    if len(parts) < 3:
        raise DataError(f"'{field}' has no 'Human:'/'Assistant:' turns.")
    if parts[0].strip():
        raise DataError(f"'{field}' has text before its first 'Human:' turn.")
    messages: list[Message] = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        content = content.strip()
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = f"{messages[-1]['content']}\n\n{content}".strip()
        else:
            messages.append({"role": role, "content": content})
    return messages


def _hh_rlhf(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    chosen = split_hh_transcript(_field(row, "chosen"), "chosen")
    rejected = split_hh_transcript(_field(row, "rejected"), "rejected")
    for name, msgs in (("chosen", chosen), ("rejected", rejected)):
        if msgs[-1]["role"] != "assistant":
            raise DataError(f"'{name}' does not end with an Assistant turn.")
    if chosen[:-1] == rejected[:-1]:
        prompt, chosen_tail, rejected_tail = chosen[:-1], chosen[-1:], rejected[-1:]
    else:  # the transcripts diverge earlier: the responses are everything after the last shared user turn
        prompt, chosen_tail, rejected_tail = _split_common_prefix(chosen, rejected)
    return _finish_preference(_with_system(prompt, system_prompt), chosen_tail, rejected_tail)


def _sharegpt_preference(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    prompt = _message_list(_field(row, "conversations"), "conversations")
    system = row.get("system")
    system = _text(system, "system", required=False) if system is not None else ""
    chosen = _responses(_field(row, "chosen"), "chosen")
    rejected = _responses(_field(row, "rejected"), "rejected")
    return _finish_preference(_with_system(prompt, system or system_prompt), chosen, rejected)


_CONVERTERS = {
    DatasetFormat.ALPACA: _alpaca,
    DatasetFormat.SHAREGPT: _sharegpt,
    DatasetFormat.MESSAGES: _messages,
    DatasetFormat.PROMPT_COMPLETION: _prompt_completion,
    DatasetFormat.TEXT: _text_row,
    DatasetFormat.PREFERENCE: _preference,
    DatasetFormat.HH_RLHF: _hh_rlhf,
    DatasetFormat.SHAREGPT_PREFERENCE: _sharegpt_preference,
}


def to_canonical(
    row: Mapping[str, Any], fmt: DatasetFormat | str, *, system_prompt: str | None = None
) -> dict[str, Any]:
    """Convert one row to the canonical shape of its format; raises ``DataError`` saying what is wrong with it.

    ``system_prompt`` is added as the first message when the row brings no system message of its own.
    """
    if not isinstance(row, Mapping):
        raise DataError(f"a record must be an object, found {type(row).__name__}.")
    fmt = DatasetFormat(fmt)
    return _CONVERTERS[fmt](row, system_prompt)
