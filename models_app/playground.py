"""The playground: chat with an owned fine-tuned model or a base model. Generation runs on the Celery `inference` queue
(models kept loaded in an LRU cache per worker) and streams tokens back through Channels; one answer can also be had
over plain HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from celery import current_app
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from finetune.db import release_db_connections
from finetune.exceptions import ServiceError
from finetune.redaction import hide_server_paths

from . import inference
from .artifacts import require_files
from .catalogue import get_usable_base_model
from .models import BaseModel, FineTunedModel

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)


# --- playground: access and requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the playground talks to: a fine-tuned model (`model`) or a base model (`base`), by id."""

    kind: str
    id: int

    @classmethod
    def parse(cls, text: str) -> Target:
        """`"12"` is fine-tuned model 12, `"base-3"` base model 3 (the websocket path's forms)."""
        kind, sep, raw = text.rpartition("-")
        if (sep and kind != "base") or not raw.isdigit():
            raise ServiceError("Unknown model.", status_code=404)
        return cls("base" if kind else "model", int(raw))

    def __str__(self) -> str:
        return f"base-{self.id}" if self.kind == "base" else str(self.id)


def resolve_target(owner: User, target: Target) -> FineTunedModel | BaseModel:
    """The owner's fine-tuned model or a base model that can answer (404 for anything else)."""
    if target.kind == "model":
        model = FineTunedModel.objects.select_related("base_model").filter(pk=target.id, owner=owner).first()
        if model is None:
            raise ServiceError("Not found.", status_code=404)
        return model
    base = get_usable_base_model(owner, target.id)  # 404 also for a private/gated repo the owner cannot read
    if base.status != BaseModel.Status.AVAILABLE:
        raise ServiceError(f"{base.name} is not available yet ({base.status}).", status_code=409)
    return base


def can_use(owner: Any, target: Target) -> bool:
    """True when `owner` (a signed-in user) may chat with `target`."""
    if owner is None or not owner.is_authenticated:
        return False
    try:
        resolve_target(owner, target)
    except ServiceError:
        return False
    return True


def check_request(payload: Any, target: Target) -> tuple[inference.GenerationRequest, bool]:
    """A checked generation request and whether to answer with the base model too (side-by-side mode)."""
    try:
        request = inference.parse_request(payload)
    except inference.InvalidRequest as exc:
        raise ServiceError(exc.message, field=exc.field) from exc
    compare = payload.get("compare_with_base", False)
    if not isinstance(compare, bool):
        raise ServiceError("compare_with_base must be true or false.", field="compare_with_base")
    if compare and target.kind == "base":
        raise ServiceError(
            "compare_with_base needs a fine-tuned model; this is a base model.", field="compare_with_base"
        )
    return request, compare


def start_generation(owner: User, target: Target, payload: Any, *, reply_channel: str) -> str:
    """Check access and input, then queue a generation on the `inference` workers that streams its events to
    `reply_channel`; returns the request id (carried by every event, and the key to `cancel_generation`)."""
    obj = resolve_target(owner, target)
    request, compare = check_request(payload, target)
    if isinstance(obj, FineTunedModel):
        require_files(obj, "used")  # answered now (409), not by a worker after the request waited in the queue
    request_id = uuid.uuid4().hex
    _enqueue(
        {
            "request_id": request_id,
            "owner_id": owner.pk,
            "target": str(target),
            "request": request.to_dict(),
            "compare_with_base": compare,
            "reply_channel": reply_channel,
        }
    )
    logger.info("playground %s: queued for user %s on %s", request_id, owner.pk, target)
    return request_id


def _enqueue(job: dict[str, Any]) -> None:
    """Queue the generation (the task by name, routed to the `inference` workers by settings)."""
    current_app.send_task("models_app.tasks.playground.generate", args=[job])


def _cancel_key(request_id: str) -> str:
    return f"playground:cancel:{request_id}"


def cancel_generation(request_id: str) -> None:
    """Ask the worker to stop a generation (the client left or pressed stop)."""
    cache.set(_cancel_key(request_id), 1, timeout=3600)


def is_cancelled(request_id: str) -> bool:
    return bool(cache.get(_cancel_key(request_id)))


# --- playground: the worker side ---------------------------------------------------------------------------------


@contextlib.contextmanager
def model_ref(obj: FineTunedModel | BaseModel) -> Iterator[inference.ModelRef]:
    """What the worker loads for a fine-tuned model (base + adapter, or the full model) or a base model, with its
    files on this host (fetched into the artifact cache) until the block ends. The key names the weights by their
    stored hash, so a loaded model is reused whichever host stored it."""
    from models_app.artifacts import base_model_folder, has_files, model_folder

    if isinstance(obj, BaseModel):
        with base_model_folder(obj) as path:
            yield inference.ModelRef(key=f"base-{obj.pk}:{obj.artifact_sha256 or path}", base_path=path)
        return
    if not has_files(obj):
        raise ServiceError(
            "This model's files are missing from the artifact store; it cannot answer.", status_code=410
        )
    with base_model_folder(obj.base_model) as base_path, model_folder(obj) as folder:
        key = f"model-{obj.pk}:{obj.artifact_sha256}"
        if obj.is_adapter:
            yield inference.ModelRef(key=key, base_path=base_path, adapter_dir=str(folder))
        else:
            yield inference.ModelRef(key=key, base_path=base_path, full_dir=str(folder))


def worker_cache() -> inference.ModelCache:
    """This worker process' model cache, with the limits from settings."""
    return inference.process_cache(
        max_models=settings.PLAYGROUND_CACHE_MAX_MODELS,
        min_free_mb=settings.PLAYGROUND_MIN_FREE_MB,
        max_rss_mb=settings.PLAYGROUND_MAX_RSS_MB,
        threads=settings.PLAYGROUND_TORCH_THREADS,
    )


class _ClientGone(Exception):
    pass


def run_generation(job: dict[str, Any]) -> None:
    """Answer one playground request (inside an `inference` worker): load the model through the process cache,
    stream `start` / `token` / `done` events (or one `error`) to the reply channel. Runs at most once per request."""
    request_id = str(job["request_id"])
    if not cache.add(f"playground:run:{request_id}", 1, timeout=6 * 3600):
        logger.info("playground %s: already handled, skipping", request_id)
        return
    reply = str(job["reply_channel"])
    async_to_sync(_stream_generation)(job, request_id, reply)


async def _stream_generation(job: dict[str, Any], request_id: str, reply: str) -> None:
    layer = get_channel_layer()
    assert layer is not None
    loop = asyncio.get_running_loop()
    gone = False

    async def send(payload: dict[str, Any]) -> None:
        nonlocal gone
        if gone:
            return
        try:
            await layer.send(reply, {"type": "playground.event", "payload": {**payload, "request_id": request_id}})
        except ChannelFull:  # nobody reads the channel any more (the socket closed): stop generating
            gone = True
            raise _ClientGone() from None

    # All model work happens on one thread: a generation holds its model's lock from start to end.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="playground") as pool:

        def call(fn: Any, *args: Any) -> Any:
            return loop.run_in_executor(pool, fn, *args)

        started = time.perf_counter()
        try:
            plan = await call(_prepare, job)
            await send(
                {
                    "type": "start",
                    "sources": [s for s, _, _ in plan],
                    "load_s": round(time.perf_counter() - started, 3),
                }
            )
            results: dict[str, dict[str, Any]] = {}
            for source, loaded, use_adapter in plan:
                generation = inference.Generation(
                    loaded,
                    inference.parse_request(job["request"]),
                    use_adapter=use_adapter,
                    should_stop=lambda: gone or is_cancelled(request_id),
                    max_prompt_tokens=settings.PLAYGROUND_MAX_PROMPT_TOKENS,
                )
                pieces = iter(generation)
                await send({"type": "source", "source": source})
                try:
                    while True:
                        piece = await call(next, pieces, None)
                        if piece is None:
                            break
                        await send({"type": "token", "text": piece, "source": source})
                finally:
                    await call(pieces.close)
                results[source] = {
                    "text": generation.text,
                    "tokens": generation.tokens,
                    "prompt_tokens": generation.prompt_tokens,
                    "duration_s": round(generation.duration_s, 3),
                    "stopped": generation.stopped,
                }
                if generation.tool_calls:
                    results[source]["tool_calls"] = generation.tool_calls
            first = results[plan[0][0]]
            await send(
                {
                    "type": "done",
                    "tokens": sum(r["tokens"] for r in results.values()),
                    "duration_s": round(time.perf_counter() - started, 3),
                    "text": first["text"],
                    "stopped": any(r["stopped"] for r in results.values()),
                    "results": results,
                }
            )
            logger.info(
                "playground %s: done, %s", request_id, {s: (r["tokens"], r["duration_s"]) for s, r in results.items()}
            )
        except _ClientGone:
            logger.info("playground %s: client gone, stopped", request_id)
        except (ServiceError, inference.InvalidRequest) as exc:
            status = getattr(exc, "status_code", 400)
            await _send_error(send, exc.message, status=status, field=getattr(exc, "field", None))
        except FileNotFoundError as exc:
            await _send_error(send, str(exc), status=410)
        except Exception as exc:  # noqa: BLE001 - anything else: a readable message, details in the worker log
            logger.exception("playground %s: generation failed", request_id)
            await _send_error(send, f"Generation failed: {type(exc).__name__}: {exc}", status=500)
        finally:
            await call(lambda: worker_cache().trim())


async def _send_error(send: Any, detail: str, *, status: int, field: str | None = None) -> None:
    try:
        await send({"type": "error", "detail": hide_server_paths(detail), "status": status, "field": field})
    except _ClientGone:
        pass


def _prepare(job: dict[str, Any]) -> list[tuple[str, inference.LoadedModel, bool]]:
    """(source, loaded model, use adapter) for each answer to produce: the target alone, or model then base."""
    from django.db import connection

    from accounts.models import User

    try:
        owner = User.objects.filter(pk=job["owner_id"]).first()
        if owner is None:
            raise ServiceError("Not found.", status_code=404)
        target = Target.parse(str(job["target"]))
        obj = resolve_target(owner, target)
        if isinstance(obj, FineTunedModel):
            obj.base_model  # noqa: B018 - loaded now, while the connection is open
    finally:
        connection.close()  # this thread ends with the request: do not leave its connection open
    cache_ = worker_cache()
    with model_ref(obj) as ref:
        loaded = cache_.get(ref)
    plan = [("base" if target.kind == "base" else "model", loaded, True)]
    if job.get("compare_with_base") and isinstance(obj, FineTunedModel):
        if ref.has_adapter:  # the same weights with the adapter switched off: no second copy in memory
            plan.append(("base", loaded, False))
        else:
            with model_ref(obj.base_model) as base_ref:
                plan.append(("base", cache_.get(base_ref), True))
    return plan


# --- playground: one answer over HTTP ----------------------------------------------------------------------------


def generate_now(owner: User, target: Target, payload: Any) -> dict[str, Any]:
    """Queue a generation and wait for its whole answer: `{text, tokens, duration_s}` (plus `base` in side-by-side
    mode). 504 when the inference worker sends nothing for PLAYGROUND_TIMEOUT_S."""
    layer = get_channel_layer()
    assert layer is not None
    channel = async_to_sync(layer.new_channel)("playground")
    request_id = start_generation(owner, target, payload, reply_channel=channel)
    release_db_connections()  # the wait below (up to PLAYGROUND_TIMEOUT_S) needs no database connection
    done = async_to_sync(_collect)(layer, channel, request_id)
    if done["type"] == "error":
        raise ServiceError(done["detail"], field=done.get("field"), status_code=int(done.get("status") or 500))
    results = done["results"]
    main = results.get("model") or results.get("base") or {}
    answer: dict[str, Any] = {
        "text": main.get("text", ""),
        "tokens": main.get("tokens", 0),
        "duration_s": main.get("duration_s", 0.0),
        "prompt_tokens": main.get("prompt_tokens"),
    }
    if main.get("tool_calls"):
        answer["tool_calls"] = main["tool_calls"]
    if "model" in results and "base" in results:
        answer["base"] = results["base"]
    return answer


async def _collect(layer: Any, channel: str, request_id: str) -> dict[str, Any]:
    limit = settings.PLAYGROUND_TIMEOUT_S
    while True:  # wait at most `limit` for each next event (the first one may wait for a busy worker)
        try:
            message = await asyncio.wait_for(layer.receive(channel), limit)
        except TimeoutError:
            await asyncio.to_thread(cancel_generation, request_id)
            raise ServiceError(
                f"No answer from the inference worker for {limit} s. Is a Celery worker running on "
                "the `inference` queue?",
                status_code=504,
            ) from None
        payload = message.get("payload") or {}
        if payload.get("request_id") == request_id and payload.get("type") in ("done", "error"):
            return dict(payload)
