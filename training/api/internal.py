"""The signed internal endpoints a remote run (Modal) reports to. Not for users: authenticated by a per-job signed
token (`Authorization: Bearer <token>`), never by session; a forged or foreign token answers 403."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from datasets_app.models import DatasetFile
from finetune import artifacts
from training import services, tracking
from training.engine.exporters.base import ADAPTER_CONFIG
from training.models import TrainingJob
from training.runners.modal import check_token, stored_objects

logger = logging.getLogger(__name__)


def _authorized_job(request: HttpRequest, job_id: int) -> TrainingJob | JsonResponse:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return JsonResponse({"detail": "Missing callback token.", "errors": {}}, status=403)
    try:
        claims = check_token(auth.removeprefix("Bearer ").strip(), job_id)
    except signing.BadSignature:
        logger.warning("job %s: refused a callback with a bad signature", job_id)
        return JsonResponse({"detail": "Invalid callback signature.", "errors": {}}, status=403)
    job = TrainingJob.objects.filter(pk=job_id).first()
    if job is None:
        return JsonResponse({"detail": "Not found.", "errors": {}}, status=404)
    if claims.get("attempt") != job.attempts:  # a run of an earlier attempt (preempted, then requeued)
        logger.warning(
            "job %s: refused a callback of attempt %s (now %s)", job_id, claims.get("attempt"), job.attempts
        )
        return JsonResponse({"detail": "This run is no longer the job's current attempt.", "errors": {}}, status=410)
    return job


@csrf_exempt
@require_http_methods(["POST"])
def job_events(request: HttpRequest, job_id: int) -> JsonResponse:
    """Events from a remote run (same services as the local runner); answers {"stop": bool} for cancellation."""
    job = _authorized_job(request, job_id)
    if isinstance(job, JsonResponse):
        return job
    import json

    try:
        body: dict[str, Any] = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"detail": "Body must be JSON.", "errors": {}}, status=400)
    if job.status in TrainingJob.FINISHED:
        return JsonResponse({"stop": True})
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
    for event in body.get("events") or []:
        if isinstance(event, dict):
            services.record_event(job.pk, event)
    final = body.get("final")
    if isinstance(final, dict):
        if final.get("status") == "interrupted":  # a lost rank, a preempted container: resume from the checkpoint
            reason = str(final.get("error") or "the Modal run was interrupted")[:500]
            services.release_for_retry(job.pk, job.lease_owner, reason)
            return JsonResponse({"stop": True})
        if final.get("status") == "failed":
            services.fail_job(
                job.pk, str(final.get("error") or "The remote run failed."), kind=str(final.get("kind") or "engine")
            )
        else:
            final = {**final, "artifact": _checked_final_artifact(job, final.get("artifact"))}
            if final.get("status") == "succeeded" and not final["artifact"]:
                services.fail_job(
                    job.pk,
                    "The remote run finished but its model never reached the artifact store; "
                    "resume the job to train it again from its last checkpoint.",
                    kind="infrastructure",
                )
            else:
                services.complete_job(job.pk, job.lease_owner, final)
    if not isinstance(final, dict):
        services.enforce_running_quota(job.pk)  # Modal spend / GPU minutes may run out mid-run
    cancel = TrainingJob.objects.filter(pk=job.pk).values_list("cancel_requested", flat=True).first()
    return JsonResponse({"stop": bool(cancel)})


def _checked_final_artifact(job: TrainingJob, claimed: Any) -> dict[str, Any]:
    """The final model a remote run says it uploaded: only an object this job's upload endpoint stored (its key is
    derived from the job and the hash), never a path from the remote side."""
    if not isinstance(claimed, dict):
        return {}
    sha = str(claimed.get("artifact_sha256") or "")
    key = f"{_final_prefix(job)}/{sha}.tar"
    if len(sha) != 64 or claimed.get("artifact_key") != key or not default_storage.exists(key):
        logger.warning("job %s: the remote run named a final model that was not uploaded here", job.pk)
        return {}
    return {
        "artifact_key": key,
        "artifact_sha256": sha,
        "artifact_size": default_storage.size(key),
        "is_adapter": bool(claimed.get("is_adapter", True)),
    }


def _final_prefix(job: TrainingJob) -> str:
    return f"artifacts/models/job-{job.pk}"


@csrf_exempt
@require_http_methods(["POST"])
def job_artifact(request: HttpRequest, job_id: int) -> JsonResponse:
    """A checkpoint (`?kind=checkpoint&step=N`), the final model (`?kind=final`) or the TensorBoard events
    (`?kind=tensorboard`) of the remote run, as the tar
    pack_dir makes. Streamed to a temporary file and hashed as it arrives (at most MODAL_ARTIFACT_MAX_BYTES), checked
    member by member, then stored in the artifact store under a key made here; a checkpoint is recorded as the job's
    newest at once, the final model's key is answered for the run's final report."""
    job = _authorized_job(request, job_id)
    if isinstance(job, JsonResponse):
        return job
    kind = request.GET.get("kind", "final")
    if kind not in ("final", "checkpoint", "tensorboard"):
        return JsonResponse(
            {"detail": "kind must be 'final', 'checkpoint' or 'tensorboard'.", "errors": {}}, status=400
        )
    limit = int(settings.MODAL_ARTIFACT_MAX_BYTES)
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > limit:
        return JsonResponse(
            {"detail": f"The upload is larger than the limit of {limit} bytes.", "errors": {}}, status=413
        )
    digest, size = hashlib.sha256(), 0
    with tempfile.NamedTemporaryFile(
        prefix=f"upload-{job.pk}-", suffix=".tar", dir=settings.FILE_UPLOAD_TEMP_DIR
    ) as tmp:
        while chunk := request.read(1 << 20):  # streamed: request.body would refuse anything over 2.5 MB
            size += len(chunk)
            if size > limit:
                return JsonResponse(
                    {"detail": f"The upload is larger than the limit of {limit} bytes.", "errors": {}}, status=413
                )
            digest.update(chunk)
            tmp.write(chunk)
        tmp.flush()
        try:
            names = artifacts.check_archive(tmp.name)
        except ValueError as exc:
            return JsonResponse({"detail": f"The artifact was refused: {exc}", "errors": {}}, status=400)
        if kind == "checkpoint":
            try:
                step = int(request.GET.get("step", ""))
            except ValueError:
                return JsonResponse({"detail": "step must be an integer.", "errors": {}}, status=400)
            stored = artifacts.store_archive(tmp.name, digest.hexdigest(), size, f"artifacts/checkpoints/job-{job.pk}")
            recorded = services.record_checkpoint(job.pk, job.lease_owner, step, stored)
            return JsonResponse({"stored": recorded, "step": step, "sha256": stored.sha256})
        prefix = tracking.tensorboard_prefix(job.pk) if kind == "tensorboard" else _final_prefix(job)
        stored = artifacts.store_archive(tmp.name, digest.hexdigest(), size, prefix)
    return JsonResponse(
        {
            "artifact_key": stored.key,
            "artifact_sha256": stored.sha256,
            "artifact_size": stored.size,
            "is_adapter": ADAPTER_CONFIG in names,
        }
    )


@require_http_methods(["GET"])
def job_object(request: HttpRequest, job_id: int, name: str) -> Any:
    """A stored object the remote run needs, by role (base_model, init_from, checkpoint), as the job names it now."""
    job = _authorized_job(request, job_id)
    if isinstance(job, JsonResponse):
        return job
    try:
        key = stored_objects(job).get(name, ("", ""))[0]
    except ValueError:
        key = ""
    if not key:
        return JsonResponse({"detail": "Not found.", "errors": {}}, status=404)
    return FileResponse(default_storage.open(key, "rb"), as_attachment=True, filename=Path(key).name)


@require_http_methods(["GET"])
def job_file(request: HttpRequest, job_id: int, file_id: int) -> FileResponse | JsonResponse:
    """A dataset file of the job, for the remote run to download."""
    job = _authorized_job(request, job_id)
    if isinstance(job, JsonResponse):
        return job
    datasets = [job.dataset_id] + ([job.eval_dataset_id] if job.eval_dataset_id else [])
    f = DatasetFile.objects.filter(pk=file_id, dataset_id__in=datasets).first()
    if f is None:
        return JsonResponse({"detail": "Not found.", "errors": {}}, status=404)
    return FileResponse(f.file.open("rb"), as_attachment=True, filename=Path(f.file.name).name)
