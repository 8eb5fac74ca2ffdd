"""Fine-tuned model registry (versions, rename, compare, delete with artifacts) and the playground (chat with an owned
fine-tuned model or a base model; generation runs on the Celery `inference` queue and streams through Channels)."""

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
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery

from finetune import artifacts
from finetune.db import release_db_connections
from finetune.exceptions import ServiceError

from . import inference
from .models import BaseModel, FineTunedModel, TaskStatus

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

LOSS_CURVE_MAX_POINTS = 2000


# --- registry ----------------------------------------------------------------------------------------------------


def owned_models(owner: User | int) -> QuerySet[FineTunedModel]:
    """The owner's fine-tuned models, annotated with `latest_version` (of their name) and `exports_count`."""
    latest = (FineTunedModel.objects.filter(owner=OuterRef("owner"), name=OuterRef("name"))
              .order_by("-version").values("version")[:1])
    return (FineTunedModel.objects.filter(owner=owner)
            .select_related("base_model", "job", "job__dataset")
            .annotate(latest_version=Subquery(latest), exports_count=Count("exports", distinct=True))
            .order_by("-created", "-id"))


def filter_models(qs: QuerySet[FineTunedModel], *, name: str | None = None, search: str | None = None,
                  base_model: int | None = None, latest_only: bool = False) -> QuerySet[FineTunedModel]:
    """Narrow `owned_models`: exact name, name/tag search, base model id, only the newest version of each name."""
    if name:
        qs = qs.filter(name=name)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(tag__icontains=search))
    if base_model is not None:
        qs = qs.filter(base_model_id=base_model)
    if latest_only:
        qs = qs.filter(version=F("latest_version"))
    return qs


def is_latest(model: FineTunedModel) -> bool:
    """True when no other model of the same owner and name has a higher version."""
    latest = getattr(model, "latest_version", None)
    if latest is None:
        latest = (FineTunedModel.objects.filter(owner_id=model.owner_id, name=model.name)
                  .order_by("-version").values_list("version", flat=True).first())
    return latest is None or model.version >= latest


def versions_of(model: FineTunedModel) -> QuerySet[FineTunedModel]:
    """Every version of the model's name (same owner), newest first."""
    return owned_models(model.owner_id).filter(name=model.name).order_by("-version", "-id")


def update_model(model: FineTunedModel, *, name: str | None = None, tag: str | None = None,
                 notes: str | None = None) -> FineTunedModel:
    """Change tag and notes of one version; a new `name` renames every version of the model together, so version
    numbers stay unique and gap-free under the new name (refused with 409 when the owner already uses that name)."""
    with transaction.atomic():
        model = FineTunedModel.objects.select_for_update().get(pk=model.pk)
        if name is not None:
            name = name.strip()
            if not name:
                raise ServiceError("The name cannot be empty.", field="name")
            if name != model.name:
                taken = FineTunedModel.objects.filter(owner_id=model.owner_id, name=name).exists()
                if taken:
                    raise ServiceError(
                        f"You already have a model named '{name}'. Renaming moves every version of "
                        f"'{model.name}' to the new name, so choose a name you do not use yet.",
                        field="name", status_code=409)
                try:
                    with transaction.atomic():
                        FineTunedModel.objects.filter(owner_id=model.owner_id, name=model.name).update(name=name)
                except IntegrityError as exc:  # a concurrent rename took the name first
                    raise ServiceError(f"You already have a model named '{name}'.", field="name",
                                       status_code=409) from exc
                model.name = name
        fields = []
        if tag is not None:
            model.tag = tag.strip()
            fields.append("tag")
        if notes is not None:
            model.notes = notes
            fields.append("notes")
        if fields:
            model.save(update_fields=fields)
    logger.info("model %s: updated (%s)", model.pk, ", ".join(fields + (["name"] if name else [])) or "nothing")
    return model


@dataclass(frozen=True)
class DeletedArtifacts:
    """What `delete_model` removed from the artifact store."""

    model_key: str | None
    files: tuple[str, ...]


def delete_model(model: FineTunedModel) -> DeletedArtifacts:
    """Delete a fine-tuned model with its artifacts: its stored folder and the stored files of its exports. Refused (409) while an export, push or import of it is running."""
    busy_states = (TaskStatus.QUEUED, TaskStatus.RUNNING)
    busy = [label for label, rel in (("an export", model.exports), ("a push to the Hub", model.hub_pushes),
                                     ("an Ollama import", model.ollama_imports))
            if rel.filter(status__in=busy_states).exists()]
    if busy:
        raise ServiceError(f"Wait for {' and '.join(busy)} of this model to finish before deleting it.",
                           status_code=409)
    keys = tuple(k for k in model.exports.exclude(file_key="").values_list("file_key", flat=True))
    model_key = model.artifact_key
    # Another row naming the same stored object (same bytes) keeps it.
    if model_key and FineTunedModel.objects.filter(artifact_key=model_key).exclude(pk=model.pk).exists():
        model_key = ""
    pk = model.pk
    with transaction.atomic():
        model.delete()
    # The row is gone (committed): now the files. A failure here leaves an orphan file, never a dangling row.
    removed: list[str] = []
    for key in keys:
        try:
            if default_storage.exists(key):
                default_storage.delete(key)
                removed.append(key)
        except Exception:  # noqa: BLE001 - storage hiccup: log it, the model is deleted anyway
            logger.exception("model %s: could not delete stored file %s", pk, key)
    if model_key:
        artifacts.delete(model_key)
    logger.info("model %s: deleted (model %s, %d export files)", pk, model_key or "-", len(removed))
    return DeletedArtifacts(model_key=model_key or None, files=tuple(removed))


def loss_curve(job_id: int | None) -> list[dict[str, Any]]:
    """A job's logged points with a loss or an eval loss, in order (thinned to at most LOSS_CURVE_MAX_POINTS)."""
    if job_id is None:
        return []
    from training.models import MetricPoint

    rows = list(MetricPoint.objects.filter(job_id=job_id).filter(Q(loss__isnull=False) | Q(eval_loss__isnull=False))
                .order_by("seq").values("seq", "kind", "step", "epoch", "loss", "eval_loss", "learning_rate"))
    if len(rows) > LOSS_CURVE_MAX_POINTS:
        stride = -(-len(rows) // LOSS_CURVE_MAX_POINTS)
        rows = [r for i, r in enumerate(rows) if i % stride == 0 or r["kind"] == "eval" or i == len(rows) - 1]
    return rows


def dataset_info(model: FineTunedModel) -> dict[str, Any] | None:
    """The dataset the model was trained on (from its job): id, name, version, format, rows and content hash."""
    job = model.job
    if job is None:
        return None
    ds = job.dataset
    return {"id": ds.pk, "name": ds.name, "version": ds.version, "format": ds.format, "rows": ds.row_count,
            "sha256": job.dataset_sha256}


def eval_report(model: FineTunedModel) -> dict[str, Any] | None:
    """Evaluation results: eval loss / perplexity before and after training, and the job's base-vs-fine-tuned
    comparison (answers to held-out prompts, per-example losses) when the run made one."""
    metrics = model.metrics or {}
    keys = ("eval_loss_before", "eval_loss_after", "perplexity_before", "perplexity_after")
    summary = {k: metrics[k] for k in keys if metrics.get(k) is not None}
    comparison = (model.job.result or {}).get("comparison") if model.job else None
    if not summary and not comparison:
        return None
    return {**summary, "comparison": comparison}


def _rows(a: dict[str, Any], b: dict[str, Any], *, numeric_delta: bool = False) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        row: dict[str, Any] = {"name": key, "a": va, "b": vb, "changed": va != vb}
        if numeric_delta:
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (va, vb))
            row["delta"] = (vb - va) if numeric else None  # type: ignore[operator]
        rows.append(row)
    return rows


def _setup(model: FineTunedModel) -> dict[str, Any]:
    job = model.job
    return {"base_model": model.base_model.repo_id, "method": model.method, "weights": model.weights,
            "backend": job.backend if job else None}


def compare_models(a: FineTunedModel, b: FineTunedModel) -> dict[str, Any]:
    """Side by side: per-model dataset, metrics, eval report and loss curve (to overlay), plus rows of setup,
    hyperparameter and metric differences (`a`, `b`, `changed`, and `delta` = b - a for numbers)."""
    def side(m: FineTunedModel) -> dict[str, Any]:
        return {"dataset": dataset_info(m), "metrics": m.metrics or {}, "hyperparameters": m.hyperparameters or {},
                "eval_report": eval_report(m), "loss_curve": loss_curve(m.job_id),
                "job": {"id": m.job_id, "status": m.job.status, "finished": m.job.finished} if m.job else None}

    da, db = dataset_info(a), dataset_info(b)
    return {
        "a": side(a),
        "b": side(b),
        "setup": _rows(_setup(a), _setup(b)),
        "hyperparameters": _rows(a.hyperparameters or {}, b.hyperparameters or {}),
        "metrics": _rows(a.metrics or {}, b.metrics or {}, numeric_delta=True),
        "same_dataset": bool(da and db and (da["id"] == db["id"] or (da["sha256"] and da["sha256"] == db["sha256"]))),
    }


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
    base = BaseModel.objects.filter(pk=target.id).first()
    if base is None:
        raise ServiceError("Not found.", status_code=404)
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
        raise ServiceError("compare_with_base needs a fine-tuned model; this is a base model.",
                           field="compare_with_base")
    return request, compare


def start_generation(owner: User, target: Target, payload: Any, *, reply_channel: str) -> str:
    """Check access and input, then queue a generation on the `inference` workers that streams its events to
    `reply_channel`; returns the request id (carried by every event, and the key to `cancel_generation`)."""
    from .tasks import playground as tasks

    resolve_target(owner, target)
    request, compare = check_request(payload, target)
    request_id = uuid.uuid4().hex
    tasks.generate.apply_async(args=[{
        "request_id": request_id, "owner_id": owner.pk, "target": str(target), "request": request.to_dict(),
        "compare_with_base": compare, "reply_channel": reply_channel,
    }])
    logger.info("playground %s: queued for user %s on %s", request_id, owner.pk, target)
    return request_id


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
        raise ServiceError("This model's files are missing from the artifact store; it cannot answer.",
                           status_code=410)
    with base_model_folder(obj.base_model) as base_path, model_folder(obj) as folder:
        key = f"model-{obj.pk}:{obj.artifact_sha256}"
        if obj.is_adapter:
            yield inference.ModelRef(key=key, base_path=base_path, adapter_dir=str(folder))
        else:
            yield inference.ModelRef(key=key, base_path=base_path, full_dir=str(folder))


def worker_cache() -> inference.ModelCache:
    """This worker process' model cache, with the limits from settings."""
    return inference.process_cache(max_models=settings.PLAYGROUND_CACHE_MAX_MODELS,
                                   min_free_mb=settings.PLAYGROUND_MIN_FREE_MB,
                                   max_rss_mb=settings.PLAYGROUND_MAX_RSS_MB,
                                   threads=settings.PLAYGROUND_TORCH_THREADS)


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
            await send({"type": "start", "sources": [s for s, _, _ in plan], "load_s": round(
                time.perf_counter() - started, 3)})
            results: dict[str, dict[str, Any]] = {}
            for source, loaded, use_adapter in plan:
                generation = inference.Generation(
                    loaded, inference.parse_request(job["request"]), use_adapter=use_adapter,
                    should_stop=lambda: gone or is_cancelled(request_id),
                    max_prompt_tokens=settings.PLAYGROUND_MAX_PROMPT_TOKENS)
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
                results[source] = {"text": generation.text, "tokens": generation.tokens,
                                   "prompt_tokens": generation.prompt_tokens,
                                   "duration_s": round(generation.duration_s, 3), "stopped": generation.stopped}
            first = results[plan[0][0]]
            await send({"type": "done", "tokens": sum(r["tokens"] for r in results.values()),
                        "duration_s": round(time.perf_counter() - started, 3), "text": first["text"],
                        "stopped": any(r["stopped"] for r in results.values()), "results": results})
            logger.info("playground %s: done, %s", request_id,
                        {s: (r["tokens"], r["duration_s"]) for s, r in results.items()})
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
        await send({"type": "error", "detail": detail, "status": status, "field": field})
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
    answer: dict[str, Any] = {"text": main.get("text", ""), "tokens": main.get("tokens", 0),
                              "duration_s": main.get("duration_s", 0.0), "prompt_tokens": main.get("prompt_tokens")}
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
            raise ServiceError(f"No answer from the inference worker for {limit} s. Is a Celery worker running on "
                               "the `inference` queue?", status_code=504) from None
        payload = message.get("payload") or {}
        if payload.get("request_id") == request_id and payload.get("type") in ("done", "error"):
            return dict(payload)
