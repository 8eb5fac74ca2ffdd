"""Ollama Modelfile parts derived from a model's own chat template: a Go ``TEMPLATE``, the default ``SYSTEM`` prompt,
stop strings and sensible ``PARAMETER``s. A template we write (ChatML, Llama-3, Alpaca) is rendered here the way
Ollama renders it and must reproduce the HF chat template exactly; anything else falls back to the template that the
GGUF carries."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings

# Markers used to probe a chat template; plain words, so templates that strip or escape content keep them intact.
PROBE_SYSTEM = "You answer in one short sentence."
PROBE_USER = "Name a primary colour."
TEMPLATE_MARKER = "SYSTEMPLACEHOLDER7F3A"


# --- Modelfile from the model's chat template ----------------------------------------------------------------------

_CHATML = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
_LLAMA3 = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)
_ALPACA = "{{ if .System }}{{ .System }}\n\n{{ end }}### Instruction:\n{{ .Prompt }}\n\n### Response:\n{{ .Response }}"
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "chatml": (_CHATML, ("<|im_start|>", "<|im_end|>")),
    "llama3": (_LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    "alpaca": (_ALPACA, ("### Instruction:",)),
}


@dataclass(frozen=True)
class ChatFormat:
    """How Ollama must wrap a prompt for this model: a Go ``TEMPLATE``, a default ``SYSTEM`` and stop strings.

    ``family`` is chatml / llama3 / alpaca (a template we write and check against the HF chat template), ``gguf``
    (an unknown chat template: no TEMPLATE, so Ollama uses the one embedded in the GGUF) or ``none`` (no chat
    template: the prompt is passed as it is).
    """

    family: str
    template: str
    system: str
    stop: tuple[str, ...]
    check: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return json.loads(json.dumps(asdict(self)))


def detect_family(chat_template: str | None) -> str:
    """The template family a Jinja chat template belongs to ("" when none of ours)."""
    if not chat_template:
        return ""
    if "<|im_start|>" in chat_template:
        return "chatml"
    if "<|start_header_id|>" in chat_template:
        return "llama3"
    if "### Instruction" in chat_template and "### Response" in chat_template:
        return "alpaca"
    return ""


_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


def render_go_template(template: str, *, system: str, prompt: str, cut_at_response: bool = True) -> str:
    """Render the subset of Go's text/template that our templates use (``.System``, ``.Prompt``, ``.Response``,
    ``if``/``else``/``end``, ``{{-``/``-}}``), like Ollama does for ``/api/generate``: stop at ``{{ .Response }}``."""
    values = {".System": system, ".Prompt": prompt, ".Response": ""}
    parts: list[tuple[str, str]] = []  # ("text", s) | ("action", s)
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        if match.group(1):
            text = text.rstrip()
        parts.append(("text", text))
        parts.append(("action", match.group(2)))
        pos = match.end()
        if match.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())
    parts.append(("text", template[pos:]))

    out: list[str] = []
    stack: list[bool] = []  # whether each enclosing branch is active

    def active() -> bool:
        return all(stack)

    for kind, value in parts:
        if kind == "text":
            if active():
                out.append(value)
            continue
        if value.startswith("if "):
            stack.append(bool(values.get(value[3:].strip(), "")))
        elif value == "else":
            stack[-1] = not stack[-1]
        elif value == "end":
            stack.pop()
        elif value in values:
            if value == ".Response" and cut_at_response and active():
                return "".join(out)
            if active():
                out.append(values[value])
        else:
            raise ValueError(f"unsupported template action {{{{ {value} }}}}")
    return "".join(out)


def _hf_render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    text = str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    bos = getattr(tokenizer, "bos_token", None)
    # A template that writes {{ bos_token }} itself (Llama-3): llama.cpp/Ollama add that token from the GGUF's
    # add_bos flag instead, so the Ollama TEMPLATE never carries it.
    if bos and text.startswith(bos) and "bos_token" in str(tokenizer.chat_template):
        text = text[len(bos) :]
    return text


def chat_format_for(tokenizer: Any) -> ChatFormat:
    """Derive the Ollama TEMPLATE/SYSTEM/stop strings from a HF tokenizer's chat template, and check them."""
    chat_template = getattr(tokenizer, "chat_template", None)
    eos = str(getattr(tokenizer, "eos_token", "") or "")
    if not chat_template:
        return ChatFormat("none", "{{ .Prompt }}", "", (eos,) if eos else (), {"match": True, "note": "no template"})
    family = detect_family(chat_template)
    if not family:
        return _gguf_fallback(eos, "the chat template is not ChatML, Llama-3 or Alpaca style")
    template, stops = FAMILIES[family]
    try:
        with_system = _hf_render(
            tokenizer, [{"role": "system", "content": PROBE_SYSTEM}, {"role": "user", "content": PROBE_USER}]
        )
        no_system = _hf_render(tokenizer, [{"role": "user", "content": PROBE_USER}])
    except Exception as exc:  # a template may refuse a system role or raise on purpose
        return _gguf_fallback(eos, f"the chat template could not be rendered ({exc})")
    # The default system prompt, if the HF template inserts one when the conversation has none (SmolLM2 does).
    default_system = ""
    if render_go_template(template, system="", prompt=PROBE_USER) != no_system:
        pre, _, post = render_go_template(template, system=TEMPLATE_MARKER, prompt=PROBE_USER).partition(
            TEMPLATE_MARKER
        )
        if no_system.startswith(pre) and no_system.endswith(post) and len(no_system) > len(pre) + len(post):
            default_system = no_system[len(pre) : len(no_system) - len(post)]
    ours_with = render_go_template(template, system=PROBE_SYSTEM, prompt=PROBE_USER)
    ours_without = render_go_template(template, system=default_system, prompt=PROBE_USER)
    check = {
        "family": family,
        "probe_system": PROBE_SYSTEM,
        "probe_user": PROBE_USER,
        "hf_with_system": with_system,
        "ollama_with_system": ours_with,
        "hf_without_system": no_system,
        "ollama_without_system": ours_without,
        "match": ours_with == with_system and ours_without == no_system,
    }
    if not check["match"]:
        fallback = _gguf_fallback(eos, f"the {family} template does not reproduce the model's chat template")
        return ChatFormat(
            fallback.family,
            fallback.template,
            fallback.system,
            fallback.stop,
            {**check, "note": fallback.check["note"]},
        )
    all_stops = tuple(dict.fromkeys([*stops, *([eos] if eos else [])]))
    return ChatFormat(family, template, default_system, all_stops, check)


def _gguf_fallback(eos: str, why: str) -> ChatFormat:
    return ChatFormat(
        "gguf",
        "",
        "",
        (eos,) if eos else (),
        {"match": False, "note": f"{why}; Ollama uses the chat template embedded in the GGUF"},
    )


def default_parameters(num_ctx: int) -> dict[str, Any]:
    """Sampling defaults for ``ollama run``: moderately creative, the context capped by ``OLLAMA_NUM_CTX``."""
    cap = int(settings.OLLAMA_NUM_CTX)
    return {
        "temperature": 0.7,
        "top_p": 0.9,
        "repeat_penalty": 1.1,
        "num_ctx": min(num_ctx, cap) if num_ctx > 0 else cap,
    }


def render_modelfile(fmt: ChatFormat, parameters: dict[str, Any], gguf_name: str) -> str:
    """A Modelfile equivalent to the ``/api/create`` request (shown to the user, usable with ``ollama create -f``)."""
    lines = [f"FROM ./{gguf_name}"]
    if fmt.template:
        lines.append(f'TEMPLATE """{fmt.template}"""')
    if fmt.system:
        lines.append(f'SYSTEM """{fmt.system}"""')
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in fmt.stop]
    lines += [f"PARAMETER {key} {value}" for key, value in parameters.items()]
    return "\n".join(lines) + "\n"


def create_request(
    name: str, digest: str, gguf_name: str, fmt: ChatFormat, parameters: dict[str, Any]
) -> dict[str, Any]:
    """The ``/api/create`` body (current API: ``files`` maps the GGUF file name to its blob digest)."""
    body: dict[str, Any] = {
        "model": name,
        "files": {gguf_name: f"sha256:{digest}"},
        "parameters": {**parameters, "stop": list(fmt.stop)},
    }
    if fmt.template:
        body["template"] = fmt.template
    if fmt.system:
        body["system"] = fmt.system
    return body
