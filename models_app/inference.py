"""Playground generation without Django: check a chat request, load a model (a base, a base with a PEFT adapter, or
a full fine-tune), render the model's own chat template and stream the answer as it is generated.

Loaded models live in a per-process LRU cache (`ModelCache`) bounded by a number of models and by memory: the least
recently used model is dropped when the process RSS passes a ceiling or the machine's available memory falls below a
floor. The Celery `inference` worker owns one cache per process (`process_cache`).
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant", "tool")  # tool: a tool's result, answering the assistant turn's call
MAX_MESSAGES = 64
MAX_MESSAGE_CHARS = 16_000
MAX_TOTAL_CHARS = 64_000
MAX_NEW_TOKENS = 1024
MAX_TOOLS = 32
MAX_TOOLS_CHARS = 32_000
DEFAULTS = {"max_new_tokens": 256, "temperature": 0.7, "top_p": 0.9}


class InvalidRequest(ValueError):
    """A generation request the user must fix; `field` names the offending input when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --- the request -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationRequest:
    """A checked chat request: the conversation (system prompt first when given, user turn last) and sampling."""

    messages: tuple[tuple[str, str], ...]
    max_new_tokens: int = DEFAULTS["max_new_tokens"]  # type: ignore[assignment]
    temperature: float = DEFAULTS["temperature"]
    top_p: float = DEFAULTS["top_p"]
    tools: tuple[dict[str, Any], ...] = ()  # canonical function specs offered to the model (tool calling)

    def chat(self) -> list[dict[str, str]]:
        """The conversation as the `[{"role", "content"}]` list chat templates take."""
        return [{"role": role, "content": content} for role, content in self.messages]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (what travels to the worker); `parse_request` reads it back."""
        out: dict[str, Any] = {
            "messages": self.chat(),
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }
        if self.tools:
            out["tools"] = list(self.tools)
        return out


def parse_tools(value: Any) -> tuple[dict[str, Any], ...]:
    """Check the optional `tools` of a request: at most `MAX_TOOLS` function specs (`{"name", "description",
    "parameters"}` or OpenAI's `{"type": "function", "function": {...}}`), `MAX_TOOLS_CHARS` of JSON in all."""
    from training.engine.data.tool_formats import parse_tools as canonical_tools
    from training.engine.errors import DataError

    if value is None or value == []:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest("tools must be a list of function specs (objects with a name).", "tools")
    if len(value) > MAX_TOOLS:
        raise InvalidRequest(f"Too many tools ({len(value)}); the limit is {MAX_TOOLS}.", "tools")
    try:
        size = len(json.dumps(value))
        tools = canonical_tools(value, "tools")
    except DataError as exc:
        raise InvalidRequest(str(exc), "tools") from None
    except (TypeError, ValueError):
        raise InvalidRequest("tools must be plain JSON.", "tools") from None
    if size > MAX_TOOLS_CHARS:
        raise InvalidRequest(
            f"The tools list is too long ({size} characters; the limit is {MAX_TOOLS_CHARS}).", "tools"
        )
    return tuple(tools)


def _number(data: Mapping[str, Any], name: str, *, integer: bool = False) -> float:
    value = data.get(name)
    if value is None:
        return float(DEFAULTS[name])
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not float(value).is_integer()):
        kind = "a whole number" if integer else "a number"
        raise InvalidRequest(f"{name} must be {kind}, got {value!r}.", name)
    if not math.isfinite(float(value)):
        raise InvalidRequest(f"{name} must be a finite number.", name)
    return float(value)


def parse_request(data: Any) -> GenerationRequest:
    """Check a playground request (`messages`, optional `system`, `max_new_tokens` 1..1024, `temperature` 0..2,
    `top_p` in (0, 1]) and return it; raises `InvalidRequest` with a message a user can act on."""
    if not isinstance(data, Mapping):
        raise InvalidRequest("The request must be a JSON object with `messages`.")
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("messages must be a non-empty list of {role, content} objects.", "messages")
    if len(raw) > MAX_MESSAGES:
        raise InvalidRequest(f"Too many messages ({len(raw)}); the limit is {MAX_MESSAGES}.", "messages")
    messages: list[tuple[str, str]] = []
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        raise InvalidRequest("system must be a string.", "system")
    if system and system.strip():
        if len(system) > MAX_MESSAGE_CHARS:
            raise InvalidRequest(
                f"The system prompt is too long ({len(system)} characters; the limit is {MAX_MESSAGE_CHARS}).",
                "system",
            )
        messages.append(("system", system.strip()))
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"messages[{i}] must be an object with role and content.", "messages")
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}; got {role!r}.", "messages")
        if not isinstance(content, str):
            raise InvalidRequest(f"messages[{i}].content must be a string.", "messages")
        if len(content) > MAX_MESSAGE_CHARS:
            raise InvalidRequest(
                f"messages[{i}] is too long ({len(content)} characters; the limit is {MAX_MESSAGE_CHARS}).", "messages"
            )
        if role == "system" and (i > 0 or messages):
            raise InvalidRequest("A system message may only come first (or use the `system` field alone).", "messages")
        if role != "system" and not content.strip():
            raise InvalidRequest(f"messages[{i}] is empty.", "messages")
        messages.append((role, content))
    if messages[-1][0] not in ("user", "tool"):
        raise InvalidRequest("The last message must be the user's (or a tool's result).", "messages")
    if sum(len(c) for _, c in messages) > MAX_TOTAL_CHARS:
        raise InvalidRequest(f"The conversation is too long (more than {MAX_TOTAL_CHARS} characters).", "messages")

    max_new_tokens = _number(data, "max_new_tokens", integer=True)
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise InvalidRequest(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}.", "max_new_tokens")
    temperature = _number(data, "temperature")
    if not 0 <= temperature <= 2:
        raise InvalidRequest("temperature must be between 0 and 2 (0 = greedy).", "temperature")
    top_p = _number(data, "top_p")
    if not 0 < top_p <= 1:
        raise InvalidRequest("top_p must be greater than 0 and at most 1.", "top_p")
    tools = parse_tools(data.get("tools"))
    for i, (role, _) in enumerate(messages):
        if role == "tool" and not tools:
            raise InvalidRequest(
                "A tool message answers a tool call: send the `tools` the model was offered with the conversation.",
                "messages",
            )
        if role == "tool" and (i == 0 or messages[i - 1][0] not in ("assistant", "tool")):
            raise InvalidRequest(
                "A tool message (a tool's result) must follow the assistant turn that called the tool.", "messages"
            )
    return GenerationRequest(
        messages=tuple(messages),
        max_new_tokens=int(max_new_tokens),
        temperature=temperature,
        top_p=top_p,
        tools=tools,
    )


# --- loading -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """What to load: `base_path` alone, `base_path` with the PEFT adapter in `adapter_dir`, or the full model in
    `full_dir`. `key` names the weights in the cache (it changes when the weights do)."""

    key: str
    base_path: str
    adapter_dir: str | None = None
    full_dir: str | None = None

    @property
    def has_adapter(self) -> bool:
        return self.adapter_dir is not None


@dataclass
class LoadedModel:
    """A model and tokenizer in memory; `lock` serialises generation on it."""

    ref: ModelRef
    model: Any
    tokenizer: Any
    load_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)


def _has_tokenizer(folder: str) -> bool:
    return (Path(folder) / "tokenizer.json").exists() or (Path(folder) / "tokenizer_config.json").exists()


def load_model(ref: ModelRef) -> LoadedModel:
    """Load a model for inference (float32 on CPU; the GPU with bfloat16 when there is one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    folder = ref.full_dir or ref.base_path
    if ref.full_dir and not Path(ref.full_dir).is_dir():
        raise FileNotFoundError(f"The model folder {ref.full_dir} is missing.")
    if ref.adapter_dir and not Path(ref.adapter_dir).is_dir():
        raise FileNotFoundError(f"The adapter folder {ref.adapter_dir} is missing.")
    tok_dir = ref.adapter_dir if ref.adapter_dir and _has_tokenizer(ref.adapter_dir) else folder
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16 if cuda else torch.float32)
    if ref.adapter_dir:
        from peft import PeftModel

        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
        model = PeftModel.from_pretrained(model, ref.adapter_dir)
    if cuda:
        model = model.to("cuda")
    model.eval()
    load_s = time.perf_counter() - started
    logger.info("playground: loaded %s in %.1f s", ref.key, load_s)
    return LoadedModel(ref=ref, model=model, tokenizer=tokenizer, load_s=load_s)


def render_prompt(
    tokenizer: Any, messages: list[dict[str, str]], tools: tuple[dict[str, Any], ...] | list[Any] = ()
) -> str:
    """The conversation rendered with the model's own chat template (a plain transcript when it has none). With
    `tools`: the template's own tool support (`apply_chat_template(tools=...)`), else the engine's documented
    fallback tool template, exactly as tool-calling data is rendered for training."""
    if tools:
        from training.engine.data import ChatRenderer

        return ChatRenderer(tokenizer).render(messages, tools=list(tools), add_generation_prompt=True)
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """The `<tool_call>{"name", "arguments"}</tool_call>` blocks of an answer as OpenAI-style calls
    (`{"type": "function", "function": {"name", "arguments": {...}}}`); blocks that are not valid JSON calls are left
    out (the text keeps them)."""
    calls: list[dict[str, Any]] = []
    for block in _TOOL_CALL.findall(text):
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            continue
        if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
            continue
        args = value.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                continue
        if isinstance(args, Mapping):
            calls.append({"type": "function", "function": {"name": value["name"], "arguments": dict(args)}})
    return calls


# --- generation --------------------------------------------------------------------------------------------------


class Generation:
    """Iterate to receive text pieces as they are generated; afterwards `text`, `tokens` (new tokens generated),
    `duration_s` and `stopped` (cancelled through `should_stop`) describe the answer.

    `generate()` runs in a thread and feeds a `TextIteratorStreamer`; closing the iterator early stops it."""

    def __init__(
        self,
        loaded: LoadedModel,
        request: GenerationRequest,
        *,
        use_adapter: bool = True,
        should_stop: Callable[[], bool] | None = None,
        max_prompt_tokens: int = 4096,
    ) -> None:
        self.loaded = loaded
        self.request = request
        self.use_adapter = use_adapter
        self.should_stop = should_stop
        self.max_prompt_tokens = max_prompt_tokens
        self.text = ""
        self.tokens = 0
        self.prompt_tokens = 0
        self.duration_s = 0.0
        self.stopped = False
        self.tool_calls: list[dict[str, Any]] = []  # parsed `<tool_call>` blocks (requests with tools only)
        self._cancel = threading.Event()
        self._error: BaseException | None = None

    def cancel(self) -> None:
        """Ask the running generation to stop after the current token."""
        self._cancel.set()

    def __iter__(self) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        loaded, request = self.loaded, self.request
        tokenizer = loaded.tokenizer
        prompt = render_prompt(tokenizer, request.chat(), request.tools)
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        self.prompt_tokens = int(ids.shape[1])
        if self.prompt_tokens > self.max_prompt_tokens:
            raise InvalidRequest(
                f"The conversation is {self.prompt_tokens} tokens long; the limit is "
                f"{self.max_prompt_tokens}. Remove earlier messages.",
                "messages",
            )
        device = next(loaded.model.parameters()).device
        ids = ids.to(device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        outer = self
        last_check = [0.0]

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                if outer._cancel.is_set():
                    return True
                now = time.monotonic()
                if outer.should_stop is not None and now - last_check[0] > 0.25:
                    last_check[0] = now
                    if outer.should_stop():
                        outer._cancel.set()
                        return True
                return False

        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        sampling = request.temperature > 0
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "max_new_tokens": request.max_new_tokens,
            "do_sample": sampling,
            "pad_token_id": pad,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_Stop()]),
        }
        if sampling:
            kwargs.update(temperature=request.temperature, top_p=request.top_p, top_k=0)
        else:  # greedy: silence the sampling defaults a generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        out_len = [0]

        def run() -> None:
            try:
                with torch.inference_mode():
                    model = loaded.model
                    if loaded.ref.has_adapter and not self.use_adapter:
                        with model.disable_adapter():
                            out = model.generate(**kwargs)
                    else:
                        out = model.generate(**kwargs)
                out_len[0] = int(out.shape[1])
            except BaseException as exc:  # noqa: BLE001 - re-raised in the iterating thread
                self._error = exc
                streamer.end()

        started = time.perf_counter()
        with loaded.lock:
            thread = threading.Thread(target=run, name="playground-generate", daemon=True)
            thread.start()
            pieces: list[str] = []
            finished = False
            try:
                for piece in streamer:
                    if piece:
                        pieces.append(piece)
                        yield piece
                finished = True
            finally:
                if not finished:  # the consumer stopped early (closed the generator or raised): stop generate()
                    self._cancel.set()
                thread.join()
        self.duration_s = time.perf_counter() - started
        self.stopped = self._cancel.is_set()
        if self._error is not None:
            raise self._error
        self.text = "".join(pieces).strip()
        self.tokens = max(out_len[0] - self.prompt_tokens, 0)
        self.tool_calls = parse_tool_calls(self.text) if request.tools else []

    def run(self) -> str:
        """Generate to the end and return the whole answer."""
        for _ in self:
            pass
        return self.text


# --- the cache ---------------------------------------------------------------------------------------------------


def available_mb() -> float:
    """Memory the machine can still hand out (MiB)."""
    import psutil

    return float(psutil.virtual_memory().available) / 2**20


def rss_mb() -> float:
    """This process' resident memory (MiB)."""
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _release_memory() -> None:
    gc.collect()
    try:  # glibc keeps freed arenas; hand them back so RSS (and the next check) reflects the eviction
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


class ModelCache:
    """An LRU of loaded models: at most `max_models`; the least recently used one is evicted while the process RSS
    is above `max_rss_mb` (0 = no ceiling) or the machine has less than `min_free_mb` available. The model being
    used is never evicted."""

    def __init__(
        self,
        *,
        max_models: int = 2,
        min_free_mb: float = 1024,
        max_rss_mb: float = 0,
        loader: Callable[[ModelRef], LoadedModel] = load_model,
        available: Callable[[], float] = available_mb,
        rss: Callable[[], float] = rss_mb,
    ) -> None:
        self.max_models = max(1, max_models)
        self.min_free_mb = min_free_mb
        self.max_rss_mb = max_rss_mb
        self._loader = loader
        self._available = available
        self._rss = rss
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.RLock()
        self.evictions: list[str] = []

    def keys(self) -> list[str]:
        """Cached keys, least recently used first."""
        return list(self._models)

    def memory_short(self) -> bool:
        """True when the RSS ceiling is passed or available memory is below the floor."""
        if self.max_rss_mb and self._rss() > self.max_rss_mb:
            return True
        return bool(self.min_free_mb and self._available() < self.min_free_mb)

    def get(self, ref: ModelRef) -> LoadedModel:
        """The loaded model for `ref`, loading it (after making room) on a miss."""
        with self._lock:
            hit = self._models.get(ref.key)
            if hit is not None:
                self._models.move_to_end(ref.key)
                return hit
            while self._models and (len(self._models) >= self.max_models or self.memory_short()):
                self._evict_oldest()
            loaded = self._loader(ref)
            self._models[ref.key] = loaded
            self.trim(keep=ref.key)
            return loaded

    def trim(self, keep: str | None = None) -> list[str]:
        """Evict least recently used models (never `keep`) while memory is short; returns the evicted keys."""
        evicted: list[str] = []
        with self._lock:
            while self.memory_short():
                candidates = [k for k in self._models if k != keep]
                if not candidates:
                    break
                evicted.append(self._evict(candidates[0]))
        return evicted

    def evict(self, key: str) -> bool:
        """Drop one model if cached."""
        with self._lock:
            if key not in self._models:
                return False
            self._evict(key)
            return True

    def clear(self) -> None:
        """Drop every model."""
        with self._lock:
            for key in list(self._models):
                self._evict(key)

    def _evict_oldest(self) -> None:
        self._evict(next(iter(self._models)))

    def _evict(self, key: str) -> str:
        loaded = self._models.pop(key)
        with loaded.lock:  # wait for a generation still running on it
            pass
        del loaded
        _release_memory()
        self.evictions.append(key)
        logger.info("playground: evicted %s (rss %.0f MiB, available %.0f MiB)", key, self._rss(), self._available())
        return key


_process_cache: ModelCache | None = None
_process_cache_lock = threading.Lock()


def process_cache(*, max_models: int, min_free_mb: float, max_rss_mb: float, threads: int = 0) -> ModelCache:
    """This process' cache (created on first use, e.g. in a forked worker child); limits follow the arguments.
    On creation, torch gets `threads` CPU threads (0: half the cores, at least one)."""
    global _process_cache
    with _process_cache_lock:
        if _process_cache is None:
            import os

            import torch

            torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) // 2))
            _process_cache = ModelCache(max_models=max_models, min_free_mb=min_free_mb, max_rss_mb=max_rss_mb)
        else:
            _process_cache.max_models = max(1, max_models)
            _process_cache.min_free_mb = min_free_mb
            _process_cache.max_rss_mb = max_rss_mb
        return _process_cache
