"""Base models from the Hub: search, model info, download into the shared model cache, and the fit estimate."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction

from accounts import realtime as events
from accounts.models import User
from accounts.services import get_hf_token
from finetune import artifacts
from finetune.exceptions import ServiceError
from models_app.catalogue import can_use
from models_app.models import BaseModel

from .client import NO_TOKEN_MESSAGE, check_repo_id, describe_hub_error, hub_client, service_error, user_token

logger = logging.getLogger(__name__)

# What a base-model download fetches: configs, tokenizer, chat template and safetensors weights (never pickles).
DOWNLOAD_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.jinja",
    "tokenizer.model",
    "*.tiktoken",
    "merges.txt",
    "vocab.txt",
    "spiece.model",
]
DOWNLOAD_IGNORE = ["original/*", "onnx/*", "*.onnx_data", "checkpoint-*/*"]
FIT_METHODS = ("full", "lora", "qlora")
_GATED_MODEL_TYPES = {
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "phi3",
    "olmo",
    "olmo2",
    "granite",
    "smollm3",
    "cohere",
    "deepseek_v2",
}


# --- search and model info ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubModelSummary:
    """One search result."""

    repo_id: str
    downloads: int
    likes: int
    gated: bool
    gated_mode: str
    pipeline_tag: str
    library_name: str
    last_modified: str | None


def search_models(user: User, q: str, limit: int = 20) -> list[HubModelSummary]:
    """Text-generation models on the Hub whose id contains `q`, most downloaded first."""
    q = (q or "").strip()
    if len(q) > 100:
        raise ServiceError("The search text is too long (100 characters at most).", field="q")
    limit = max(1, min(int(limit), settings.HF_SEARCH_MAX_RESULTS))
    api = hub_client(user_token(user))
    try:
        found = list(
            api.list_models(
                search=q or None,
                pipeline_tag="text-generation",
                sort="downloads",
                limit=limit,
                expand=["downloads", "likes", "gated", "pipeline_tag", "library_name", "lastModified"],
            )
        )
    except Exception as exc:
        raise service_error(exc) from None
    return [
        HubModelSummary(
            repo_id=m.id,
            downloads=int(m.downloads or 0),
            likes=int(m.likes or 0),
            gated=bool(m.gated),
            gated_mode=str(m.gated or ""),
            pipeline_tag=str(m.pipeline_tag or ""),
            library_name=str(m.library_name or ""),
            last_modified=m.last_modified.isoformat() if m.last_modified else None,
        )
        for m in found
    ]


@dataclass(frozen=True)
class HubModelDetails:
    """What the catalogue and the download dialog show about a Hub model."""

    repo_id: str
    sha: str
    architecture: str
    model_type: str
    parameters: int | None
    parameters_source: str  # "safetensors" (the Hub's count from the weight headers), "config" (estimate) or ""
    context_length: int | None
    license: str
    gated: bool
    gated_mode: str
    size_bytes: int  # what a download fetches (configs, tokenizer, safetensors)
    total_size_bytes: int
    has_chat_template: bool | None  # None: the tokenizer config could not be read (e.g. gated without access)
    has_safetensors: bool
    pipeline_tag: str
    library_name: str
    downloads: int
    likes: int
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    private: bool = False

    @property
    def downloadable(self) -> bool:
        return not self.problems


def _wanted(path: str) -> bool:
    from huggingface_hub.utils import filter_repo_objects

    return bool(list(filter_repo_objects([path], allow_patterns=DOWNLOAD_PATTERNS, ignore_patterns=DOWNLOAD_IGNORE)))


def _hub_json(api: Any, repo_id: str, sha: str, filename: str) -> dict[str, Any] | None:
    """A small JSON file of the repo read through the Hub (None when it cannot be read)."""
    try:
        path = api.hf_hub_download(
            repo_id, filename, revision=sha or None, cache_dir=str(settings.FINETUNE_MODEL_CACHE)
        )
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except Exception as exc:  # gated without access, not found, unreadable: the field stays unknown
        logger.info("could not read %s from %s: %s", filename, repo_id, type(exc).__name__)
        return None
    return data if isinstance(data, dict) else None


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    inner = cfg.get("text_config")
    return {**cfg, **inner} if isinstance(inner, dict) else cfg


def params_from_config(cfg: dict[str, Any]) -> int | None:
    """Estimate the parameter count of a decoder-only transformer from its config (embeddings + attention + MLP)."""
    c = _text_config(cfg)
    try:
        h = int(c.get("hidden_size") or c.get("n_embd") or c.get("d_model"))
        layers = int(c.get("num_hidden_layers") or c.get("n_layer") or c.get("num_layers"))
        vocab = int(c.get("vocab_size"))
    except (TypeError, ValueError):
        return None
    heads = int(c.get("num_attention_heads") or c.get("n_head") or 1)
    kv = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or h // max(heads, 1))
    inter = int(c.get("intermediate_size") or c.get("n_inner") or 4 * h)
    experts = int(c.get("num_local_experts") or c.get("num_experts") or 1)
    attention = h * heads * head_dim * 2 + h * kv * head_dim * 2
    mlp = (3 if str(c.get("model_type", "")) in _GATED_MODEL_TYPES else 2) * h * inter * experts
    embeddings = vocab * h * (1 if c.get("tie_word_embeddings", True) else 2)
    return embeddings + layers * (attention + mlp + 2 * h)


def _context_length(cfg: dict[str, Any]) -> int | None:
    c = _text_config(cfg)
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx"):
        if isinstance(c.get(key), int) and c[key] > 0:
            return int(c[key])
    return None


def _architecture(cfg: dict[str, Any]) -> str:
    archs = cfg.get("architectures")
    if isinstance(archs, list) and archs:
        return str(archs[0])
    return str(cfg.get("model_type") or "")


def _has_chat_template(tokenizer_config: dict[str, Any] | None, files: list[str]) -> bool | None:
    if any(Path(f).name in ("chat_template.jinja", "chat_template.json") for f in files):
        return True
    if tokenizer_config is None:
        return None
    return bool(tokenizer_config.get("chat_template"))


def model_info(user: User, repo_id: str) -> HubModelDetails:
    """Architecture, parameter count, license, gated, size and chat template of a Hub model (read with the user's
    token; the configs are fetched through the Hub into the shared cache)."""
    repo_id = check_repo_id(repo_id)
    api = hub_client(user_token(user))
    try:
        info = api.model_info(repo_id, files_metadata=True)
    except Exception as exc:
        raise service_error(exc, repo_id) from None
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    files = sorted(sizes)
    sha = str(info.sha or "")
    cfg = (_hub_json(api, info.id, sha, "config.json") if "config.json" in sizes else None) or {}
    tokenizer_config = (
        _hub_json(api, info.id, sha, "tokenizer_config.json")
        if "tokenizer_config.json" in sizes
        else ({} if files else None)
    )
    hub_config = info.config or {}
    if not cfg and hub_config:
        cfg = {k: v for k, v in hub_config.items() if k in ("architectures", "model_type")}
    if tokenizer_config is None and isinstance(hub_config.get("tokenizer_config"), dict):
        tokenizer_config = hub_config["tokenizer_config"]
    if info.safetensors is not None and info.safetensors.total:
        parameters, source = int(info.safetensors.total), "safetensors"
    else:
        parameters = params_from_config(cfg) if cfg else None
        source = "config" if parameters else ""
    license_ = ""
    if info.card_data is not None and getattr(info.card_data, "license", None):
        license_ = str(info.card_data.license)
    else:
        license_ = next((t.split(":", 1)[1] for t in info.tags or [] if t.startswith("license:")), "")
    has_safetensors = any(f.endswith(".safetensors") and _wanted(f) for f in files)
    architecture = _architecture(cfg)
    problems = []
    if not has_safetensors:
        problems.append(
            f"{repo_id} has no safetensors weights; finetune only loads safetensors (pickled .bin "
            "files are not trusted)."
        )
    if (
        architecture
        and not architecture.endswith(("ForCausalLM", "ForConditionalGeneration"))
        and (info.pipeline_tag not in (None, "text-generation"))
    ):
        problems.append(f"{repo_id} is not a text-generation model ({architecture}, {info.pipeline_tag}).")
    size_bytes = sum(size for name, size in sizes.items() if _wanted(name))
    if settings.HF_DOWNLOAD_MAX_BYTES and size_bytes > settings.HF_DOWNLOAD_MAX_BYTES:
        problems.append(
            f"{repo_id} is {_size(size_bytes)} to download ({size_bytes} bytes), above this server's "
            f"limit of {_size(settings.HF_DOWNLOAD_MAX_BYTES)} ({settings.HF_DOWNLOAD_MAX_BYTES} bytes, "
            "HF_DOWNLOAD_MAX_BYTES); choose a smaller model or ask an operator."
        )
    return HubModelDetails(
        repo_id=info.id,
        sha=sha,
        architecture=architecture,
        model_type=str(cfg.get("model_type") or ""),
        parameters=parameters,
        parameters_source=source,
        context_length=_context_length(cfg) if cfg else None,
        license=license_,
        gated=bool(info.gated),
        gated_mode=str(info.gated or ""),
        size_bytes=size_bytes,
        total_size_bytes=sum(sizes.values()) or int(info.used_storage or 0),
        has_chat_template=_has_chat_template(tokenizer_config, files),
        has_safetensors=has_safetensors,
        pipeline_tag=str(info.pipeline_tag or ""),
        library_name=str(info.library_name or ""),
        downloads=int(info.downloads or 0),
        likes=int(info.likes or 0),
        files=files,
        problems=problems,
        private=bool(info.private),
    )


def _size(n: int) -> str:
    """Bytes as people read them (decimal units, as the Hub shows sizes)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


# --- download into the shared model cache ------------------------------------------------------------------------
def request_download(user: User, repo_id: str) -> BaseModel:
    """Add a Hub model to the catalogue and download it in the background (idempotent: a model already downloaded or
    downloading is returned as it is; a failed one is tried again)."""
    details = model_info(user, repo_id)
    if not details.downloadable:
        raise ServiceError(" ".join(details.problems), field="repo_id")
    fields = {
        "name": details.repo_id,
        "architecture": details.architecture[:100],
        "parameters": details.parameters or 0,
        "context_length": details.context_length or 0,
        "license": details.license[:100],
        "has_chat_template": bool(details.has_chat_template),
        "size_bytes": details.size_bytes,
        "gated": details.gated,
        "private": details.private,
        "description": f"From the Hugging Face Hub ({details.pipeline_tag or 'model'}).",
    }
    with transaction.atomic():
        row, created = BaseModel.objects.select_for_update().get_or_create(
            repo_id=details.repo_id,
            defaults={
                **fields,
                "source": BaseModel.Source.HUB,
                "status": BaseModel.Status.DOWNLOADING,
                "added_by": user,
            },
        )
        if not created:
            if not can_use(user, row):  # someone else's download of a repo this user's token cannot read
                raise ServiceError(
                    f"{details.repo_id} is a gated or private model your token cannot read: request "
                    "access on its Hub page with the account your token belongs to.",
                    status_code=403,
                )
            if row.source != BaseModel.Source.HUB or row.status == BaseModel.Status.AVAILABLE:
                return row
            if row.status == BaseModel.Status.DOWNLOADING:
                # Asked again while downloading: queue the task again. It is harmless if the first one is alive
                # (files already in the cache are kept, the others wait on huggingface_hub's per-file locks) and
                # restarts a download whose worker died.
                _enqueue_download(row.pk, user.pk)
                return row
            for key, value in fields.items():
                setattr(row, key, value)
            row.status, row.download_progress, row.error, row.added_by = BaseModel.Status.DOWNLOADING, 0.0, "", user
            row.save()
        _enqueue_download(row.pk, user.pk)
    logger.info("base model %s: download of %s requested by user %s", row.pk, row.repo_id, user.pk)
    return row


def _enqueue_download(base_model_id: int, user_id: int) -> None:
    transaction.on_commit(
        lambda: current_app.send_task(
            "models_app.tasks.hub.download_base_model", args=[base_model_id, user_id], queue="default"
        )
    )


def _dir_bytes(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    except OSError:
        return 0


def _publish_download(row: BaseModel, progress: float, status: str) -> None:
    if row.added_by_id:
        events.publish_task_progress(
            row.added_by_id, kind="download", task_id=row.pk, progress=progress, status=status
        )


def _fail_download(row: BaseModel, message: str) -> None:
    BaseModel.objects.filter(pk=row.pk, status=BaseModel.Status.DOWNLOADING).update(
        status=BaseModel.Status.FAILED, error=message
    )
    logger.warning("base model %s: download of %s failed: %s", row.pk, row.repo_id, message)
    _publish_download(row, row.download_progress, BaseModel.Status.FAILED)


def run_download(base_model_id: int, user_id: int) -> None:
    """Download a Hub model's configs, tokenizer and safetensors into the shared cache with the user's token,
    reporting progress (idempotent: a model that is not downloading is left alone; files already cached are kept)."""
    row = BaseModel.objects.filter(pk=base_model_id, source=BaseModel.Source.HUB).first()
    if row is None or row.status != BaseModel.Status.DOWNLOADING:
        logger.info("base model %s: not downloading, skipping", base_model_id)
        return
    try:
        _download(row, user_id)
    except Exception:  # anything not handled below: never leave the row "downloading"
        logger.exception("base model %s: internal error during the download", row.pk)
        _fail_download(
            row, "Internal error during the download; try again, or ask an operator to look at the worker logs."
        )
        raise


def _download(row: BaseModel, user_id: int) -> None:
    from huggingface_hub.file_download import repo_folder_name

    user = User.objects.filter(pk=user_id).first()
    token = get_hf_token(user) if user is not None else None
    if not token:
        _fail_download(row, NO_TOKEN_MESSAGE)
        return
    api = hub_client(token)
    cache = Path(settings.FINETUNE_MODEL_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    outcome: dict[str, Any] = {}

    def download() -> None:
        try:
            outcome["path"] = api.snapshot_download(
                row.repo_id,
                cache_dir=str(cache),
                allow_patterns=DOWNLOAD_PATTERNS,
                ignore_patterns=DOWNLOAD_IGNORE,
                max_workers=settings.HF_DOWNLOAD_MAX_WORKERS,
            )
        except BaseException as exc:  # handed to the reporting thread below
            outcome["error"] = exc

    # The download runs in a thread; this thread (which owns the database connection) watches the bytes arriving in
    # the cache's blob folder and reports them, so progress never depends on huggingface_hub's progress bars.
    started = time.monotonic()
    worker = threading.Thread(target=download, name=f"hub-download-{row.pk}", daemon=True)
    worker.start()
    blobs = cache / repo_folder_name(repo_id=row.repo_id, repo_type="model") / "blobs"
    _publish_download(row, 0.0, BaseModel.Status.DOWNLOADING)
    reported = 0.0
    while worker.is_alive():
        worker.join(0.5)
        if worker.is_alive() and row.size_bytes > 0:
            fraction = min(0.99, _dir_bytes(blobs) / row.size_bytes)
            if fraction - reported >= 0.01:
                reported = fraction
                BaseModel.objects.filter(pk=row.pk, status=BaseModel.Status.DOWNLOADING).update(
                    download_progress=fraction
                )
                _publish_download(row, fraction, BaseModel.Status.DOWNLOADING)
    if "error" in outcome:
        failure = describe_hub_error(outcome["error"], repo_id=row.repo_id)
        if failure.internal:
            logger.error("base model %s: download failed", row.pk, exc_info=outcome["error"])
        row.download_progress = reported
        _fail_download(row, failure.message)
        return
    folder = Path(outcome["path"])
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        _fail_download(
            row,
            f"The download of {row.repo_id} is incomplete: config.json or safetensors weights are "
            "missing from the repository.",
        )
        return
    update = _local_metadata(folder)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    # Into the artifact store (every host fetches it from there by key), then out of this host's download cache.
    try:
        stored = artifacts.store_folder(folder, f"artifacts/base-models/{row.pk}")
    except Exception as exc:
        logger.exception("base model %s: could not store the snapshot", row.pk)
        _fail_download(row, f"The download of {row.repo_id} could not be stored ({type(exc).__name__}); try again.")
        return
    finally:
        shutil.rmtree(cache / repo_folder_name(repo_id=row.repo_id, repo_type="model"), ignore_errors=True)
    done = BaseModel.objects.filter(pk=row.pk, status=BaseModel.Status.DOWNLOADING).update(
        status=BaseModel.Status.AVAILABLE,
        artifact_key=stored.key,
        artifact_sha256=stored.sha256,
        artifact_size=stored.size,
        revision=folder.name,
        download_progress=1.0,
        error="",
        size_bytes=size,
        **update,
    )
    logger.info(
        "base model %s: %s downloaded (revision %s, %d bytes, %.1f s) and stored as %s",
        row.pk,
        row.repo_id,
        folder.name,
        size,
        time.monotonic() - started,
        stored.key,
    )
    if done:
        _publish_download(row, 1.0, BaseModel.Status.AVAILABLE)


def _local_metadata(folder: Path) -> dict[str, Any]:
    """Catalogue fields read from the downloaded files themselves."""
    out: dict[str, Any] = {}
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    if cfg:
        out["architecture"] = _architecture(cfg)[:100]
        if _context_length(cfg):
            out["context_length"] = _context_length(cfg)
    try:
        tok = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tok = None
    chat = _has_chat_template(tok if isinstance(tok, dict) else None, [p.name for p in folder.iterdir()])
    if chat is not None:
        out["has_chat_template"] = chat
    return out


# --- fit estimate ---------------------------------------------------------------------------------------------------
def fit_estimate(base_model: BaseModel, method: str, max_length: int, batch_size: int) -> dict[str, Any]:
    """Peak training memory for full / LoRA / QLoRA at this max length and batch size, and whether it fits here and
    on each Modal GPU (the engine's memory model, as in the training wizard's estimate and the run itself)."""
    from training.engine import memory as memory_model

    def steps_on(device_type: str) -> dict[str, Any]:  # SFT step estimates for full / LoRA / QLoRA
        return memory_model.estimates_by_weights(
            shape,
            method="sft",
            batch_size=batch_size,
            max_length=max_length,
            device_type=device_type,
            precision=memory_model.default_precision(device_type),
        )

    if method not in FIT_METHODS:
        raise ServiceError(f"method must be one of {', '.join(FIT_METHODS)}.", field="method")
    if not 16 <= max_length <= 131072:
        raise ServiceError("max_length must be between 16 and 131072.", field="max_length")
    if not 1 <= batch_size <= 1024:
        raise ServiceError("batch_size must be between 1 and 1024.", field="batch_size")
    shape = memory_model.base_model_shape(base_model.repo_id, base_model.parameters or None)
    configured = settings.TRAINING_DEVICE_MEMORY_GB
    available = memory_model.local_memory_gb(configured)
    steps = steps_on(memory_model.local_device_type(configured))
    on_gpu = steps_on("cuda")[method]
    fits = {m: step.fits(available * 1024) for m, step in steps.items()}
    needed = {m: step.device_gb() for m, step in steps.items()}
    notes = []
    if base_model.context_length and max_length > base_model.context_length:
        notes.append(f"max_length {max_length} is longer than the model's context ({base_model.context_length}).")
    if not fits[method]:
        cheaper = [m for m in FIT_METHODS if fits[m]]
        notes.append(
            f"{method} needs about {steps[method].device_gb(1)} GB even with gradient checkpointing; this "
            f"machine has {available:.0f} GB."
            + (f" {', '.join(cheaper)} would fit." if cheaper else " Try a Modal GPU.")
        )
    return {
        "base_model": base_model.pk,
        "method": method,
        "max_length": max_length,
        "batch_size": batch_size,
        "parameters": shape.params,
        "memory_gb": needed[method],
        "memory_gb_by_method": needed,
        "available_gb": round(available, 1),
        "fits": fits[method],
        "fits_by_method": fits,
        "modal_gpus_fit": {gpu: on_gpu.fits(gb * 1024) for gpu, gb in settings.MODAL_GPU_MEMORY_GB.items()},
        "notes": notes,
    }
