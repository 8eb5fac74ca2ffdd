"""Preference formats: conversion of prompt/chosen/rejected pairs (``preference``, ``hh_rlhf``,
``sharegpt_preference``) to TRL's conversational preference shape, and of unpaired preference rows (``kto``: a
conversation or prompt/completion with a boolean ``label``) to TRL's conversational unpaired shape
``{"prompt": [messages...], "completion": [{"role": "assistant", ...}], "label": bool}``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from training.engine.errors import DataError

from .messages import Message, check_conversation, column, message_list, text_field, with_system


def _responses(value: Any, field: str) -> list[Message]:
    if isinstance(value, (list, tuple, Mapping)):
        msgs = message_list(value, field)
    else:
        msgs = [{"role": "assistant", "content": text_field(value, field)}]
    if not msgs or msgs[0]["role"] != "assistant":
        raise DataError(f"'{field}' must start with an assistant turn.")
    return msgs  # an empty response is a legitimate choice (HH-RLHF prefers silence over harm in a few rows)


def _finish_preference(prompt: list[Message], chosen: list[Message], rejected: list[Message]) -> dict[str, Any]:
    prompt = check_conversation(prompt, "prompt", final="user")
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


def preference(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    chosen_raw, rejected_raw = column(row, "chosen"), column(row, "rejected")
    system = row.get("system")
    system = text_field(system, "system", required=False) if system is not None else ""
    if "prompt" in row:
        prompt_raw = row["prompt"]
        if isinstance(prompt_raw, (list, tuple)):
            prompt = message_list(prompt_raw, "prompt")
        else:
            prompt = [{"role": "user", "content": text_field(prompt_raw, "prompt")}]
        chosen, rejected = _responses(chosen_raw, "chosen"), _responses(rejected_raw, "rejected")
    else:
        if not isinstance(chosen_raw, (list, tuple)) or not isinstance(rejected_raw, (list, tuple)):
            raise DataError("without a 'prompt' column, 'chosen' and 'rejected' must be whole conversations.")
        prompt, chosen, rejected = _split_common_prefix(
            message_list(chosen_raw, "chosen"), message_list(rejected_raw, "rejected")
        )
    return _finish_preference(with_system(prompt, system or system_prompt), chosen, rejected)


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


def hh_rlhf(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    chosen = split_hh_transcript(column(row, "chosen"), "chosen")
    rejected = split_hh_transcript(column(row, "rejected"), "rejected")
    for name, msgs in (("chosen", chosen), ("rejected", rejected)):
        if msgs[-1]["role"] != "assistant":
            raise DataError(f"'{name}' does not end with an Assistant turn.")
    if chosen[:-1] == rejected[:-1]:
        prompt, chosen_tail, rejected_tail = chosen[:-1], chosen[-1:], rejected[-1:]
    else:  # the transcripts diverge earlier: the responses are everything after the last shared user turn
        prompt, chosen_tail, rejected_tail = _split_common_prefix(chosen, rejected)
    return _finish_preference(with_system(prompt, system_prompt), chosen_tail, rejected_tail)


def sharegpt_preference(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    prompt = message_list(column(row, "conversations"), "conversations")
    system = row.get("system")
    system = text_field(system, "system", required=False) if system is not None else ""
    chosen = _responses(column(row, "chosen"), "chosen")
    rejected = _responses(column(row, "rejected"), "rejected")
    return _finish_preference(with_system(prompt, system or system_prompt), chosen, rejected)


_LABELS = {
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "yes": True,
    "no": False,
    "desirable": True,
    "undesirable": False,
    "good": True,
    "bad": False,
}


def is_kto_label(value: Any) -> bool:
    """True when ``value`` reads as a KTO label (a bool, 0/1, "true"/"false", "desirable"/"undesirable", ...)."""
    try:
        kto_label(value)
    except DataError:
        return False
    return True


def kto_label(value: Any) -> bool:
    """A KTO row's ``label`` as a bool (true = desirable); ``DataError`` for anything that is not clearly one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    raise DataError(f"'label' must be true (desirable) or false (undesirable), found {value!r}.")


def kto(row: Mapping[str, Any], system_prompt: str | None) -> dict[str, Any]:
    """One unpaired preference row: the prompt (ending with a user turn) and the final assistant turn, labelled."""
    label = kto_label(column(row, "label"))
    if "messages" in row or "conversations" in row:
        messages = message_list(column(row, "messages", "conversations"), "messages")
        messages = check_conversation(with_system(messages, system_prompt), "messages")
        if not messages or messages[-1]["role"] != "assistant":
            raise DataError("'messages' must end with the assistant turn the label judges.")
        prompt, completion = messages[:-1], messages[-1:]
    else:
        prompt_raw = column(row, "prompt")
        if isinstance(prompt_raw, (list, tuple)):
            prompt = message_list(prompt_raw, "prompt")
        else:
            prompt = [{"role": "user", "content": text_field(prompt_raw, "prompt")}]
        completion = _responses(column(row, "completion"), "completion")
        prompt = with_system(prompt, system_prompt)
    prompt = check_conversation(prompt, "prompt", final="user")
    if not completion[0]["content"].strip():
        raise DataError("the completion is empty: there is nothing for the label to judge.")
    return {"prompt": prompt, "completion": completion, "label": label}
