"""Chat templates: named Jinja templates, picking the one to use, rendering fast, and the end-of-turn token.

The named templates are plain Jinja strings that ``tokenizer.apply_chat_template(..., chat_template=...)`` accepts.
Rendering here uses the same compiled, sandboxed Jinja environment as transformers, once per template.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from training.engine.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ALPACA_TEMPLATE = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] + '\n\n' }}{% set loop_messages = messages[1:] %}"
    "{% else %}"
    "{{ 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' }}"
    "{% set loop_messages = messages %}"
    "{% endif %}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

LLAMA2_TEMPLATE = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

# Plain continuation: system and user text as they are, then the assistant text and EOS (prompt/completion data).
COMPLETION_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ message['content'] }}{% endif %}"
    "{% endfor %}"
)

# Tool calling for templates without tool support (Qwen2.5 / Hermes style ChatML): the tools are listed in the system
# block inside <tools></tools>, an assistant's calls follow its text as <tool_call>{"name", "arguments"}</tool_call>
# blocks, and each tool result is a `tool` turn wrapped in <tool_response></tool_response>. Documented in
# docs/DATASETS-CONTRACT.md ("Tool calling").
TOOL_SYSTEM_DEFAULT = "You are a helpful assistant."
TOOL_FALLBACK_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\n' }}"
    "{%- if messages and messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- '" + TOOL_SYSTEM_DEFAULT + "' }}{%- endif %}"
    "{{- '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n'"
    " + 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}"
    "{%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within '"
    " + '<tool_call></tool_call> XML tags:\n<tool_call>\n'"
    ' + \'{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n\' }}'
    "{%- elif messages and messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' and loop.first %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\n' + (message['content'] or '') }}"
    "{%- for call in message.get('tool_calls') or [] %}"
    "{%- set fn = call['function'] if call['function'] is defined else call %}"
    "{%- if loop.first and message['content'] %}{{- '\n' }}{%- elif not loop.first %}{{- '\n' }}{%- endif %}"
    "{{- '<tool_call>\n{\"name\": ' + (fn['name'] | tojson) + ', \"arguments\": ' + (fn['arguments'] | tojson)"
    " + '}\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{- '<|im_start|>tool\n<tool_response>\n' + message['content'] + '\n</tool_response><|im_end|>\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


def template_supports_tools(template: str) -> bool:
    """Whether a chat template renders tools itself: its source uses the ``tools`` variable."""
    return re.search(r"\btools\b", template) is not None


def uses_tools(messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None = None) -> bool:
    """Whether a conversation needs tool rendering: a tools list, assistant tool calls or tool results."""
    return bool(tools) or any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)


CHAT_TEMPLATES: dict[str, str] = {
    "alpaca": ALPACA_TEMPLATE,
    "chatml": CHATML_TEMPLATE,
    "llama2": LLAMA2_TEMPLATE,
    "completion": COMPLETION_TEMPLATE,
    "tools": TOOL_FALLBACK_TEMPLATE,
}
TEMPLATE_NAMES: tuple[str, ...] = ("auto", *CHAT_TEMPLATES)

# End-of-turn markers of common templates; the tokenizer's own added tokens are checked too.
_KNOWN_EOT = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>", "<|end_of_text|>")
_PROBE_USER = "Ping from the finetune template probe."
_PROBE_ASSISTANT = "Pong from the finetune template probe."


def _looks_like_jinja(value: str) -> bool:
    return "{%" in value or "{{" in value


def _tokenizer_template(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, Mapping):  # several named templates: take the default one
        template = template.get("default") or next(iter(template.values()), None)
    return template if isinstance(template, str) and template.strip() else None


def _vocab_has(tokenizer: Any, token: str) -> bool:
    try:
        vocab = tokenizer.get_vocab()
    except Exception:  # pragma: no cover - exotic tokenizers
        return False
    return token in vocab


def resolve_chat_template(tokenizer: Any, name: str | None = None) -> str:
    """Return the Jinja template to use.

    ``None``/"auto": the tokenizer's own template; when it has none, ChatML if its vocabulary has ``<|im_start|>``,
    else Alpaca. A known name returns that template; a string containing Jinja tags is used as is. Anything else
    raises ``ConfigError`` listing the names.
    """
    if name is None or (isinstance(name, str) and name.strip().lower() in ("", "auto", "tokenizer", "default")):
        own = _tokenizer_template(tokenizer)
        if own is not None:
            return own
        fallback = "chatml" if _vocab_has(tokenizer, "<|im_start|>") else "alpaca"
        logger.info("tokenizer has no chat template; using the %s template", fallback)
        return CHAT_TEMPLATES[fallback]
    if not isinstance(name, str):
        raise ConfigError(f"chat_template must be a name ({', '.join(TEMPLATE_NAMES)}) or a Jinja string.")
    key = name.strip().lower()
    if key in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[key]
    if _looks_like_jinja(name):
        return name
    raise ConfigError(f"Unknown chat template '{name}'. Valid names: {', '.join(TEMPLATE_NAMES)} (or a Jinja string).")


@lru_cache(maxsize=32)
def _compile(template: str) -> Any:
    """Compile a template the way transformers does (sandboxed, trim_blocks, its helper globals)."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        return _compile_jinja_template(template)
    except ImportError:  # pragma: no cover - fallback if transformers moves its private helper
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise jinja2.exceptions.TemplateError(message)

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = raise_exception
        return env.from_string(template)


class ChatRenderer:
    """Renders canonical messages with one template and one tokenizer's special tokens; reuse it across rows.

    Conversations with tools (a tools list, assistant ``tool_calls``, ``tool`` turns) render with the template itself
    when it supports tools (``supports_tools``) and with ``TOOL_FALLBACK_TEMPLATE`` otherwise (``tool_renderer``).
    """

    def __init__(self, tokenizer: Any, chat_template: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.template = resolve_chat_template(tokenizer, chat_template)
        self._compiled = _compile(self.template)
        self._kwargs = dict(getattr(tokenizer, "special_tokens_map", None) or {})  # as apply_chat_template passes
        self._eot: str | None = None
        self._skeleton: _Skeletons | None = None
        self.supports_tools = template_supports_tools(self.template)
        self._tool_renderer: ChatRenderer | None = None

    def tool_renderer(self) -> ChatRenderer:
        """The renderer for tool-calling conversations: this one when the template supports tools, else one of the
        fallback template ``TOOL_FALLBACK_TEMPLATE`` (made once)."""
        if self.supports_tools:
            return self
        if self._tool_renderer is None:
            self._tool_renderer = ChatRenderer(self.tokenizer, TOOL_FALLBACK_TEMPLATE)
        return self._tool_renderer

    def for_conversation(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None = None
    ) -> ChatRenderer:
        """The renderer that renders this conversation (``tool_renderer`` when it uses tools)."""
        return self.tool_renderer() if not self.supports_tools and uses_tools(messages, tools) else self

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """The conversation as text, exactly as ``apply_chat_template(tokenize=False, tools=tools)`` renders it
        (with the fallback tool template when the conversation uses tools and the template does not support them)."""
        import jinja2

        renderer = self.for_conversation(messages, tools)
        if renderer is not self:
            return renderer.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)
        try:
            return str(
                self._compiled.render(
                    messages=list(messages),
                    tools=list(tools) if tools else None,
                    documents=None,
                    add_generation_prompt=add_generation_prompt,
                    **self._kwargs,
                )
            )
        except jinja2.TemplateError as exc:
            raise DataError(f"the chat template cannot render this conversation: {exc}") from None

    def render_for_counting(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """Like ``render`` but fast for bulk counting: the template is rendered once per sequence of roles with
        placeholders and the contents are pasted in (checked against ``render`` on the first rows; any difference
        switches back to ``render`` for good). Contents with leading/trailing whitespace always use ``render``, and
        so do conversations with a tools list."""
        if tools:
            return self.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)
        if self._skeleton is None:
            self._skeleton = _Skeletons(self)
        return self._skeleton.render(messages, add_generation_prompt)

    @property
    def eot(self) -> str:
        """The end-of-turn marker that follows an assistant turn (see ``end_of_turn_token``)."""
        if self._eot is None:
            self._eot = _probe_eot(self)
        return self._eot


_SENTINELS = (("\x02", "\x03"), ("\x0e", "\x0f"))  # control characters that are not whitespace
_SKELETON_CHECKS = 64
# Templates that look inside the content ("'</think>' in content", content.split(...), content | length) may render
# rare rows differently: they always render row by row. Pasting needs content used as a whole (strip/trim allowed).
_CONTENT_INSPECTION = re.compile(
    r"""\bin\s+[\w.\[\]'"]*content\b"""
    r"""|content['"]?\]?\s*\|\s*(?!trim\b|string\b)\w"""
    r"""|content['"]?\]?\s*\.\s*(?!strip\s*\(\s*\))\w"""
)


class _Skeletons:
    """Per role sequence, the rendered template split around the message contents (see ``render_for_counting``)."""

    def __init__(self, renderer: ChatRenderer) -> None:
        self._renderer = renderer
        self._parts: dict[tuple[tuple[str, ...], bool], list[str] | None] = {}
        self._checks = 0
        self.enabled = _CONTENT_INSPECTION.search(renderer.template) is None

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool) -> str:
        real = self._renderer.render
        if not self.enabled:
            return real(messages, add_generation_prompt=add_generation_prompt)
        contents: list[str] = []
        for m in messages:
            content = m.get("content")
            if (
                len(m) != 2
                or not isinstance(content, str)
                or not content
                or content[0].isspace()
                or content[-1].isspace()
                or any(a in content or b in content for a, b in _SENTINELS)
            ):
                return real(messages, add_generation_prompt=add_generation_prompt)
            contents.append(content)
        key = (tuple(str(m.get("role")) for m in messages), add_generation_prompt)
        parts = self._parts.get(key, [])
        if parts == []:
            parts = self._parts[key] = self._build(key[0], add_generation_prompt)
        if parts is None:
            return real(messages, add_generation_prompt=add_generation_prompt)
        text = parts[0] + "".join(c + p for c, p in zip(contents, parts[1:], strict=True))
        if self._checks < _SKELETON_CHECKS:
            self._checks += 1
            if text != real(messages, add_generation_prompt=add_generation_prompt):
                logger.info("the chat template does not paste contents verbatim; counting renders every row")
                self.enabled = False
                return real(messages, add_generation_prompt=add_generation_prompt)
        return text

    def _build(self, roles: tuple[str, ...], add_generation_prompt: bool) -> list[str] | None:
        found: list[list[str]] = []
        for a, b in _SENTINELS:
            marks = [f"{a}{i}{b}" for i in range(len(roles))]
            try:
                text = self._renderer.render(
                    [{"role": r, "content": mark} for r, mark in zip(roles, marks, strict=True)],
                    add_generation_prompt=add_generation_prompt,
                )
            except DataError:
                return None
            parts: list[str] = []
            for mark in marks:
                if text.count(mark) != 1:
                    return None
                before, text = text.split(mark)
                parts.append(before)
            parts.append(text)
            found.append(parts)
        return found[0] if all(p == found[0] for p in found) else None


def render_chat(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    chat_template: str | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """Render one conversation to text with the resolved template."""
    return ChatRenderer(tokenizer, chat_template).render(messages, add_generation_prompt=add_generation_prompt)


def _probe_eot(renderer: ChatRenderer) -> str:
    tokenizer = renderer.tokenizer
    eos = getattr(tokenizer, "eos_token", None) or ""
    try:
        text = renderer.render(
            [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ASSISTANT}]
        )
    except DataError:
        return str(eos)
    at = text.find(_PROBE_ASSISTANT)
    if at < 0:
        return str(eos)
    tail = text[at + len(_PROBE_ASSISTANT) :]
    candidates = set(_KNOWN_EOT)
    if eos:
        candidates.add(str(eos))
    try:
        candidates.update(str(t) for t in getattr(tokenizer, "all_special_tokens", []) or [])
        candidates.update(str(getattr(t, "content", t)) for t in (tokenizer.added_tokens_decoder or {}).values())
    except Exception:  # pragma: no cover - exotic tokenizers
        pass
    best: tuple[int, int, str] | None = None
    for token in candidates:
        if not token or token.isspace():
            continue
        i = tail.find(token)
        if i >= 0 and (best is None or (i, -len(token)) < (best[0], best[1])):
            best = (i, -len(token), token)
    return best[2] if best else str(eos)


def end_of_turn_token(tokenizer: Any, template: str | None = None) -> str:
    """The marker that closes an assistant turn under ``template`` ("<|im_end|>" for ChatML, else usually EOS).

    Found by rendering a probe conversation and taking the first special token after the assistant text.
    """
    return ChatRenderer(tokenizer, template).eot
