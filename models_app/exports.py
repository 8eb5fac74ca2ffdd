"""Exports of fine-tuned models (LoRA adapter, merged safetensors, GGUF F16/Q8_0/Q6_K/Q5_K_M/Q4_K_M) as background tasks, stored in
Django storage and downloaded by their owner through short-lived signed links.

A GGUF is only offered once the engine's llama.cpp verification (``training/engine/exporters/verify.py``: greedy
answers to golden prompts compared with transformers) passed; otherwise the export fails with that explanation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from celery import current_app
from django.conf import settings
from django.core import signing
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import Http404
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import User
from accounts.realtime import publish_task_progress
from finetune.exceptions import ServiceError
from models_app.artifacts import base_model_folder, model_folder, require_files
from models_app.models import FineTunedModel, ModelExport, TaskStatus

logger = logging.getLogger(__name__)

KIND = "export"
FORMATS = tuple(ModelExport.Format.values)  # adapter, merged, gguf
QUANTIZATIONS = ("f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m")  # the engine's gguf-* exporters
DEFAULT_QUANTIZATION = "q8_0"
ADAPTER_WEIGHTS = ("lora", "qlora")
_SIGNING_SALT = "models_app.exports.download"
# Files already compressed (or incompressible weights): stored as they are, so packing 500 MB takes seconds.
_STORED_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".model")

ProgressCallback = Callable[[float, str], None]


# --- lookups ---------------------------------------------------------------------------------------------------------


def get_owned_model(user: User, model_id: int) -> FineTunedModel:
    """The user's fine-tuned model, or Http404 (another user's id looks exactly like a missing one)."""
    model = FineTunedModel.objects.select_related("base_model").filter(pk=model_id, owner=user).first()
    if model is None:
        raise Http404("No such model.")
    return model


def owned_exports(user: User) -> Any:
    """The user's exports, newest first."""
    return ModelExport.objects.filter(owner=user).select_related("model")


def normalize_quantization(value: str | None) -> str:
    """A GGUF quantization as stored ("Q4_K_M" and "q4_k_m" are one): lower case, "" when not given."""
    return str(value or "").strip().lower()


def export_file_name(export: ModelExport) -> str:
    """The download's file name, named the way GGUF files usually are: ``tiny-alpaca-v2-Q4_K_M.gguf``,
    ``tiny-alpaca-v2-F16.gguf``, or ``tiny-alpaca-v2-adapter.zip``."""
    stem = f"{slugify(export.model.name) or 'model'}-v{export.model.version}"
    if export.format == ModelExport.Format.GGUF:
        return f"{stem}-{export.quantization.upper()}.gguf"
    return f"{stem}-{export.format}.zip"


def storage_key(export: ModelExport) -> str:
    """Where the export's file lives in storage."""
    return f"exports/{export.owner_id}/{export.model_id}/{export.pk}/{export_file_name(export)}"


def is_available(export: ModelExport) -> bool:
    """True when the export succeeded and its file is still in storage."""
    return export.status == TaskStatus.SUCCEEDED and bool(export.file_key) and default_storage.exists(export.file_key)


@contextlib.contextmanager
def open_export(export: ModelExport) -> Iterator[IO[bytes]]:
    """The stored file, opened for reading (local disk or S3 alike)."""
    fh = default_storage.open(export.file_key, "rb")
    try:
        yield fh
    finally:
        fh.close()


# --- requesting ------------------------------------------------------------------------------------------------------


def validate_choice(model: FineTunedModel, fmt: str, quantization: str | None) -> tuple[str, str]:
    """(format, quantization) checked against what can be exported, or ServiceError with a clear message."""
    fmt = (fmt or "").strip().lower()
    quantization = normalize_quantization(quantization)
    if fmt not in FORMATS:
        raise ServiceError(f"Unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}.", field="format")
    if fmt == ModelExport.Format.GGUF:
        quantization = quantization or DEFAULT_QUANTIZATION
        if quantization not in QUANTIZATIONS:
            raise ServiceError(
                f"GGUF quantization {quantization!r} is not supported; choose one of: "
                f"{', '.join(q.upper() for q in QUANTIZATIONS)}.",
                field="quantization",
            )
    elif quantization:
        raise ServiceError(
            f"Quantization applies only to GGUF exports; the {fmt} export keeps the trained weights as they are.",
            field="quantization",
        )
    if fmt == ModelExport.Format.ADAPTER and model.weights not in ADAPTER_WEIGHTS:
        raise ServiceError(
            f"This model was trained with {model.weights} weights, so it has no LoRA adapter; export it as "
            "'merged' or 'gguf'.",
            field="format",
        )
    require_files(model, "exported")
    return fmt, quantization


def _is_stale(export: ModelExport) -> bool:
    since = export.started or export.created
    return since < timezone.now() - timedelta(seconds=int(settings.EXPORT_STALE_S))


def _identical(model: FineTunedModel, fmt: str, quantization: str) -> Any:
    return ModelExport.objects.filter(model=model, owner_id=model.owner_id, format=fmt, quantization=quantization)


def _reusable(model: FineTunedModel, fmt: str, quantization: str) -> ModelExport | None:
    """A succeeded identical export whose file is still there, or one queued/running right now."""
    for export in _identical(model, fmt, quantization).filter(status=TaskStatus.SUCCEEDED).order_by("-id"):
        if is_available(export):
            return export
    pending = _identical(model, fmt, quantization).filter(status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING])
    for export in pending.order_by("-id"):
        if not _is_stale(export):
            return export
        _fail(export, "The export stopped without finishing (its worker went away); it was started again.")
    return None


def _create(model: FineTunedModel, fmt: str, quantization: str) -> ModelExport:
    return ModelExport.objects.create(
        owner_id=model.owner_id,
        model=model,
        format=fmt,
        quantization=quantization,
        run_token=uuid.uuid4().hex,
        stage="queued",
    )


def request_export(user: User, model_id: int, format: str, quantization: str | None = None) -> ModelExport:
    """Validate an export request of the user's model; reuse an identical export or enqueue a new one."""
    model = get_owned_model(user, model_id)
    fmt, quant = validate_choice(model, format, quantization)
    with transaction.atomic():
        # Lock the model row so two identical requests at the same moment make one export, not two.
        FineTunedModel.objects.select_for_update().filter(pk=model.pk).first()
        existing = _reusable(model, fmt, quant)
        if existing is not None:
            logger.info("export %s reused for %s %s%s", existing.pk, model, fmt, quant)
            return existing
        export = _create(model, fmt, quant)
        export_id, token = export.pk, export.run_token
        transaction.on_commit(lambda: _enqueue(export_id, token))
    logger.info("export %s queued: %s as %s %s", export.pk, model, fmt, quant)
    return export


def _enqueue(export_id: int, token: str) -> None:
    current_app.send_task("models_app.tasks.exports.run_export", args=[export_id, token], queue="default")


# --- running ---------------------------------------------------------------------------------------------------------


def _progress(export: ModelExport, fraction: float, stage: str, on_progress: ProgressCallback | None) -> None:
    export.progress, export.stage = fraction, stage
    ModelExport.objects.filter(pk=export.pk).update(progress=fraction, stage=stage)
    publish_task_progress(export.owner_id, kind=KIND, task_id=export.pk, progress=fraction, status=export.status)
    if on_progress is not None:
        on_progress(fraction, stage)


def _fail(export: ModelExport, message: str, verification: dict[str, Any] | None = None) -> None:
    fields: dict[str, Any] = {"status": TaskStatus.FAILED, "error": message, "finished": timezone.now()}
    if verification is not None:
        fields["verification"] = verification
    ModelExport.objects.filter(pk=export.pk).update(**fields)
    for key, value in fields.items():
        setattr(export, key, value)
    publish_task_progress(
        export.owner_id, kind=KIND, task_id=export.pk, progress=export.progress, status=TaskStatus.FAILED
    )


def run_export(export_id: int, run_token: str, *, on_progress: ProgressCallback | None = None) -> ModelExport | None:
    """Run one queued export (engine exporter, model card, packing, storage). A repeat or stale run is a no-op."""
    from training.engine.errors import EngineError

    claimed = ModelExport.objects.filter(pk=export_id, run_token=run_token, status=TaskStatus.QUEUED).update(
        status=TaskStatus.RUNNING, started=timezone.now(), progress=0.01, stage="starting"
    )
    if not claimed:
        logger.info("export %s: run %s is stale or done, skipping", export_id, run_token)
        return None
    export = ModelExport.objects.select_related("model", "model__base_model", "model__job__dataset").get(pk=export_id)
    try:
        _run(export, on_progress)
    except EngineError as exc:  # bad input or a failed verification: the user reads why
        report = getattr(exc, "report", None)
        verification = report.to_dict() if report is not None else {"passed": False, "problems": [str(exc)]}
        logger.info("export %s failed: %s", export.pk, str(exc).splitlines()[0])
        _fail(export, str(exc), verification if export.format == ModelExport.Format.GGUF else None)
    except ServiceError as exc:
        _fail(export, exc.message)
    except Exception:
        logger.exception("export %s: internal error", export.pk)
        _fail(export, "The export failed because of an internal error; see the server logs.")
        raise
    return export


def _engine_options(export: ModelExport) -> tuple[str, dict[str, Any]]:
    model = export.model
    if export.format == ModelExport.Format.ADAPTER:
        return "adapter", {"base_model_name": model.base_model.public_id}
    if export.format == ModelExport.Format.MERGED:
        return "merged", {}
    options: dict[str, Any] = {
        "verify": True,  # never offer an unverified GGUF
        "max_new_tokens": int(settings.EXPORT_VERIFY_MAX_NEW_TOKENS),
        "model_name": f"{model.name} v{model.version}",
        "file_name": export_file_name(export),
    }
    if settings.EXPORT_VERIFY_PROMPTS:
        options["prompts"] = list(settings.EXPORT_VERIFY_PROMPTS)
    return f"gguf-{export.quantization}", options


def _run(export: ModelExport, on_progress: ProgressCallback | None) -> None:
    from training.engine.exporters import export_artifact

    model = export.model
    timings: dict[str, float] = {}
    started = time.perf_counter()
    name, options = _engine_options(export)
    stage = {
        "adapter": "copying the adapter",
        "merged": "merging the adapter into the base model",
    }.get(name, f"converting to GGUF {export.quantization} and verifying it on llama.cpp")
    _progress(export, 0.05, stage, on_progress)
    if settings.EXPORT_WORK_DIR:  # a fresh host (or container) may not have it yet
        Path(settings.EXPORT_WORK_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"export-{export.pk}-", dir=settings.EXPORT_WORK_DIR) as tmp:
        with model_folder(model) as folder, base_model_folder(model.base_model) as base_path:
            artifact = export_artifact(
                name, model_dir=str(folder), base_model_path=base_path, out_dir=str(Path(tmp) / "out"), **options
            )
        timings["export_s"] = round(time.perf_counter() - started, 2)
        verification: dict[str, Any] = {}
        if export.format == ModelExport.Format.GGUF:
            report = artifact.metadata.get("verification") or {}
            if not artifact.metadata.get("verified") or not report.get("passed"):
                raise ServiceError("The GGUF was not verified on llama.cpp, so it is not offered.")
            verification = dict(report)
            timings["merge_s"] = float(artifact.metadata.get("merge_seconds") or 0.0)
            timings["conversion_s"] = float(artifact.metadata.get("conversion_seconds") or 0.0)
            path, digest, size = Path(artifact.path), artifact.sha256, artifact.size_bytes
        else:
            _progress(export, 0.75, "writing the model card and packing the archive", on_progress)
            t0 = time.perf_counter()
            folder = Path(artifact.path)
            _write_card(export, folder)
            path = Path(tmp) / export_file_name(export)
            pack_folder(folder, path, root=path.stem)
            digest, size = _sha256(path), path.stat().st_size
            timings["pack_s"] = round(time.perf_counter() - t0, 2)
        _progress(export, 0.9, "storing the file", on_progress)
        t0 = time.perf_counter()
        key = storage_key(export)
        if default_storage.exists(key):  # a previous attempt of this very export left it behind
            default_storage.delete(key)
        with open(path, "rb") as fh:
            stored = default_storage.save(key, _ScratchFile(fh, name=path.name))
        timings["store_s"] = round(time.perf_counter() - t0, 2)
    timings["total_s"] = round(time.perf_counter() - started, 2)
    verification["timings"] = timings
    done = ModelExport.objects.filter(pk=export.pk, run_token=export.run_token, status=TaskStatus.RUNNING).update(
        status=TaskStatus.SUCCEEDED,
        progress=1.0,
        stage="ready",
        file_key=stored,
        size_bytes=size,
        sha256=digest,
        verification=verification,
        finished=timezone.now(),
        error="",
    )
    if not done:  # someone marked it failed (stale) meanwhile: keep their verdict, drop our file
        default_storage.delete(stored)
        export.refresh_from_db()
        return
    export.refresh_from_db()
    publish_task_progress(export.owner_id, kind=KIND, task_id=export.pk, progress=1.0, status=export.status)
    logger.info("export %s succeeded: %s (%d bytes) in %.1f s", export.pk, stored, size, timings["total_s"])


class _ScratchFile(File):
    """A scratch file storage may take over: FileSystemStorage moves it (a rename on the same disk) instead of
    copying hundreds of MB; other storages (S3) read and upload it as usual."""

    def temporary_file_path(self) -> str:
        return str(self.file.name)


def _write_card(export: ModelExport, folder: Path) -> None:
    from training.engine.exporters import write_model_card

    model = export.model
    job = model.job
    datasets = [job.dataset.name] if job is not None and job.dataset_id else []
    write_model_card(
        str(folder),
        base_model=model.base_model.public_id,
        base_model_note=model.base_model.provenance_note,
        datasets=datasets,
        method=model.method,
        weights=model.weights,
        hyperparameters=model.hyperparameters or {},
        metrics=model.metrics or {},
        evaluation=model.evaluation or None,
        model_name=f"{model.name}",
        extra={"tags": [f"v{model.version}", f"{export.format}-export"]},
    )


def pack_folder(folder: Path, archive: Path, *, root: str) -> None:
    """Zip ``folder`` under ``root/``: weights stored as they are, text compressed (fast for 500 MB of weights)."""
    with zipfile.ZipFile(archive, "w", allowZip64=True) as zf:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = file.relative_to(folder).as_posix()
            stored = file.suffix.lower() in _STORED_SUFFIXES
            zf.write(file, f"{root}/{rel}", compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        manifest = {"files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())}
        zf.writestr(f"{root}/export.json", json.dumps(manifest, indent=2) + "\n", compress_type=zipfile.ZIP_DEFLATED)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def ensure_verified_gguf(
    model: FineTunedModel, quantization: str, on_progress: ProgressCallback | None = None
) -> ModelExport:
    """A succeeded (hence verified) GGUF export of the model: reused, or produced right here in this process."""
    fmt, quant = validate_choice(model, ModelExport.Format.GGUF, quantization)
    export = _reusable(model, fmt, quant)
    if export is None:
        export = _create(model, fmt, quant)
    if export.status == TaskStatus.QUEUED:
        # Run it here; the queued task (if any) then finds it claimed and does nothing.
        run_export(export.pk, export.run_token, on_progress=on_progress)
    deadline = time.monotonic() + int(settings.EXPORT_STALE_S)
    export.refresh_from_db()
    while export.status == TaskStatus.RUNNING and time.monotonic() < deadline:  # another worker is on it
        time.sleep(2)
        export.refresh_from_db()
    if export.status == TaskStatus.RUNNING:
        raise ServiceError(f"The GGUF export {export.pk} did not finish in time.")
    return export


# --- signed download links -------------------------------------------------------------------------------------------


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=_SIGNING_SALT)


def download_token(export: ModelExport) -> str:
    """A token for ``export`` valid for ``EXPORT_LINK_TTL_S`` seconds (bound to its id and file checksum)."""
    return _signer().sign(f"{export.pk}.{export.sha256[:32]}")


def download_link(export: ModelExport, user: User) -> dict[str, Any]:
    """For the export's owner: the path of a signed, short-lived download URL and when it expires."""
    if export.owner_id != user.pk:
        raise Http404("No such export.")
    if not is_available(export):
        if export.status == TaskStatus.SUCCEEDED:
            raise ServiceError("The exported file is no longer in storage; export the model again.", status_code=409)
        raise ServiceError(f"Export {export.pk} is not ready to download (status: {export.status}).", status_code=409)
    ttl = int(settings.EXPORT_LINK_TTL_S)
    path = f"/api/models/exports/{export.pk}/download/?{urlencode({'sig': download_token(export)})}"
    return {
        "path": path,
        "expires_in": ttl,
        "expires_at": timezone.now() + timedelta(seconds=ttl),
        "file_name": export_file_name(export),
        "size_bytes": export.size_bytes,
        "sha256": export.sha256,
    }


def resolve_download(export_id: int, token: str) -> ModelExport:
    """The export a signed link grants, or ServiceError 403 when it expired, was forged or no longer applies."""
    ttl = int(settings.EXPORT_LINK_TTL_S)
    try:
        value = _signer().unsign(token, max_age=ttl)
    except signing.SignatureExpired as exc:
        raise ServiceError(
            f"This download link has expired (links are valid for {ttl} seconds); request a new one from the "
            "model's page.",
            status_code=403,
        ) from exc
    except signing.BadSignature as exc:
        raise ServiceError("This download link is not valid (its signature does not match).", status_code=403) from exc
    pk, _, digest = value.partition(".")
    export = ModelExport.objects.select_related("model").filter(pk=export_id).first()
    if str(export_id) != pk or export is None or not export.sha256.startswith(digest) or not is_available(export):
        raise ServiceError("This download link is not valid for this file.", status_code=403)
    return export
