"""Dataset formats: detection from the columns, column mapping, and conversion to one canonical shape.

Canonical shapes (what the trainers and TRL consume):

* SFT formats -> ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``
* tool-calling formats -> ``{"messages": [...], "tools": [...]}`` with assistant ``tool_calls`` and ``tool`` turns
  (see ``tool_formats``)
* TEXT -> ``{"text": str}``
* preference formats -> TRL's conversational preference format
  ``{"prompt": [messages...], "chosen": [{"role": "assistant", ...}], "rejected": [{"role": "assistant", ...}]}``
* KTO (unpaired preference) -> ``{"prompt": [messages...], "completion": [{"role": "assistant", ...}], "label": bool}``
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from training.engine.errors import DataError

from .messages import Message, check_conversation, column, message_list, text_field, with_system
from .preference_formats import hh_rlhf, is_kto_label, kto, preference, sharegpt_preference
from .tool_formats import is_messages_tool_row, is_sharegpt_tool_row, messages_tools, sharegpt_tools


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
    KTO = "kto"
    SHAREGPT_TOOLS = "sharegpt_tools"
    MESSAGES_TOOLS = "messages_tools"


TOOL_FORMATS = frozenset({DatasetFormat.SHAREGPT_TOOLS, DatasetFormat.MESSAGES_TOOLS})
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
    DatasetFormat.KTO: "messages (or prompt, completion) and a boolean label (true = desirable)",
    DatasetFormat.SHAREGPT_TOOLS: "conversations with function_call/observation turns[, tools, system]",
    DatasetFormat.MESSAGES_TOOLS: "messages with assistant tool_calls and tool turns[, tools]",
}


def is_preference(fmt: DatasetFormat | str) -> bool:
    """True for the formats that hold chosen/rejected pairs (DPO, ORPO)."""
    return DatasetFormat(fmt) in PREFERENCE_FORMATS


def is_tool_format(fmt: DatasetFormat | str | None) -> bool:
    """True for the tool-calling formats (conversations with tool calls, tool results and a tools list)."""
    return fmt is not None and DatasetFormat(fmt) in TOOL_FORMATS


def is_unpaired_preference(fmt: DatasetFormat | str | None) -> bool:
    """True for KTO data: single completions labelled desirable or undesirable (trained with KTO only)."""
    return fmt is not None and DatasetFormat(fmt) is DatasetFormat.KTO


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
    if (
        "label" in keys
        and ("messages" in keys or ("prompt" in keys and "completion" in keys))
        and is_kto_label(row["label"])
    ):
        return DatasetFormat.KTO  # a labelled completion: SFT on it would also learn the undesirable ones
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
        return DatasetFormat.SHAREGPT_TOOLS if is_sharegpt_tool_row(row) else DatasetFormat.SHAREGPT
    if "messages" in keys:
        return DatasetFormat.MESSAGES_TOOLS if is_messages_tool_row(row) else DatasetFormat.MESSAGES
    if "instruction" in keys and ("output" in keys or "response" in keys):
        return DatasetFormat.ALPACA
    if "prompt" in keys and "completion" in keys:
        return DatasetFormat.PROMPT_COMPLETION
    if "text" in keys:
        return DatasetFormat.TEXT
    return None


def detect_format(rows: Sequence[Mapping[str, Any]]) -> DatasetFormat:
    """Detect the format from a sample of rows (the first ~100); the majority wins, except that one tool-calling row
    makes its layout's tool format win over the plain one (the tool formats read plain conversations too).

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
    for tools, plain in (
        (DatasetFormat.SHAREGPT_TOOLS, DatasetFormat.SHAREGPT),
        (DatasetFormat.MESSAGES_TOOLS, DatasetFormat.MESSAGES),
    ):
        if votes[tools]:
            votes[tools] += votes.pop(plain, 0)
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


def _alpaca(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    instruction = text_field(column(row, "instruction"), "instruction", required=False)
    extra = text_field(column(row, "input", "context", required=False), "input", required=False)
    output = text_field(column(row, "output", "response"), "output")
    user = f"{instruction}\n\n{extra}" if instruction.strip() and extra.strip() else instruction or extra
    if not user.strip():
        raise DataError("'instruction' and 'input' are both empty.")
    if not output.strip():
        raise DataError("'output' is empty: there is nothing to train on.")
    messages: list[Message] = []
    system = row.get("system")
    if system is not None:
        system = text_field(system, "system", required=False)
    if system or system_prompt:
        messages.append({"role": "system", "content": system or system_prompt or ""})
    history = row.get("history")
    if history:
        if not isinstance(history, (list, tuple)):
            raise DataError("'history' must be a list of [instruction, response] pairs.")
        for i, pair in enumerate(history):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise DataError(f"history[{i}] must be an [instruction, response] pair.")
            messages.append({"role": "user", "content": text_field(pair[0], f"history[{i}][0]")})
            messages.append({"role": "assistant", "content": text_field(pair[1], f"history[{i}][1]")})
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": output})
    return {"messages": messages}


def _sharegpt(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    messages = message_list(column(row, "conversations"), "conversations")
    system = row.get("system")
    system = text_field(system, "system", required=False) if system is not None else ""
    messages = with_system(messages, system or system_prompt)
    return {"messages": check_conversation(messages, "conversations")}


def _messages(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    messages = message_list(column(row, "messages"), "messages")
    return {"messages": check_conversation(with_system(messages, system_prompt), "messages")}


def _prompt_completion(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    prompt, completion = column(row, "prompt"), column(row, "completion")
    if isinstance(prompt, (list, tuple)):
        prompt_msgs = message_list(prompt, "prompt")
    else:
        prompt_msgs = [{"role": "user", "content": text_field(prompt, "prompt")}]
    if isinstance(completion, (list, tuple, Mapping)):
        completion_msgs = message_list(completion, "completion")
    else:
        completion_msgs = [{"role": "assistant", "content": text_field(completion, "completion")}]
    messages = with_system(prompt_msgs + completion_msgs, system_prompt)
    if not any(m["content"].strip() for m in prompt_msgs):
        raise DataError("'prompt' is empty.")
    return {"messages": check_conversation(messages, "prompt/completion")}


def _text_row(row: Mapping[str, Any], _system_prompt: str | None) -> dict[str, Any]:
    text = text_field(column(row, "text"), "text")
    if not text.strip():
        raise DataError("'text' is empty.")
    return {"text": text}


_CONVERTERS = {
    DatasetFormat.ALPACA: _alpaca,
    DatasetFormat.SHAREGPT: _sharegpt,
    DatasetFormat.MESSAGES: _messages,
    DatasetFormat.PROMPT_COMPLETION: _prompt_completion,
    DatasetFormat.TEXT: _text_row,
    DatasetFormat.PREFERENCE: preference,
    DatasetFormat.HH_RLHF: hh_rlhf,
    DatasetFormat.SHAREGPT_PREFERENCE: sharegpt_preference,
    DatasetFormat.KTO: kto,
    DatasetFormat.SHAREGPT_TOOLS: sharegpt_tools,
    DatasetFormat.MESSAGES_TOOLS: messages_tools,
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
