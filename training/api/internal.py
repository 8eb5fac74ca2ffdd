"""The signed internal endpoints a remote run (Modal) reports to. Not for users: authenticated by a per-job signed
token (`Authorization: Bearer <token>`), never by session; a forged or foreign token answers 403."""

from __future__ import annotations

import logging
import shutil
import tarfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core import signing
from django.http import FileResponse, HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from datasets_app.models import DatasetFile
from training import services, specs
from training.models import TrainingJob
from training.runners.modal import check_token

logger = logging.getLogger(__name__)


def _authorized_job(request: HttpRequest, job_id: int) -> TrainingJob | JsonResponse:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return JsonResponse({"detail": "Missing callback token.", "errors": {}}, status=403)
    try:
        check_token(auth.removeprefix("Bearer ").strip(), job_id)
    except signing.BadSignature:
        logger.warning("job %s: refused a callback with a bad signature", job_id)
        return JsonResponse({"detail": "Invalid callback signature.", "errors": {}}, status=403)
    job = TrainingJob.objects.filter(pk=job_id).first()
    if job is None:
        return JsonResponse({"detail": "Not found.", "errors": {}}, status=404)
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
        if final.get("status") == "failed":
            services.fail_job(job.pk, str(final.get("error") or "The remote run failed."), kind=str(
                final.get("kind") or "engine"))
        else:
            local_final = specs.run_dir(job) / "final"
            if local_final.exists():
                final = {**final, "model_dir": str(local_final)}
            services.complete_job(job.pk, job.lease_owner, final)
    if not isinstance(final, dict):
        services.enforce_running_quota(job.pk)  # Modal spend / GPU minutes may run out mid-run
    cancel = TrainingJob.objects.filter(pk=job.pk).values_list("cancel_requested", flat=True).first()
    return JsonResponse({"stop": bool(cancel)})


@csrf_exempt
@require_http_methods(["POST"])
def job_artifact(request: HttpRequest, job_id: int) -> JsonResponse:
    """The remote run's final model as a tar.gz; unpacked safely into the job's run folder."""
    job = _authorized_job(request, job_id)
    if isinstance(job, JsonResponse):
        return job
    target = specs.run_dir(job)
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / ".final.incoming"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    archive = target / ".final.tar.gz"
    with open(archive, "wb") as out:  # streamed: request.body would refuse anything over 2.5 MB
        while chunk := request.read(1 << 20):
            out.write(chunk)
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")  # refuses absolute paths, .. and links outside
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return JsonResponse({"detail": f"The artifact is not a valid tar.gz: {exc}", "errors": {}}, status=400)
    finally:
        archive.unlink(missing_ok=True)
    final = target / "final"
    shutil.rmtree(final, ignore_errors=True)
    (tmp / "final").rename(final)
    shutil.rmtree(tmp, ignore_errors=True)
    return JsonResponse({"stored": str(final.relative_to(Path(settings.TRAINING_RUNS_DIR)))})


@require_http_methods(["GET"])
def job_file(request: HttpRequest, job_id: int, file_id: int) -> FileResponse | JsonResponse:
    """A dataset file of the job, for the remote run to download."""
    job = _authorized_job(request, job_id)
    if isinstance(job, JsonResponse):
        return job
    f = DatasetFile.objects.filter(pk=file_id, dataset_id=job.dataset_id).first()
    if f is None:
        return JsonResponse({"detail": "Not found.", "errors": {}}, status=404)
    return FileResponse(f.file.open("rb"), as_attachment=True, filename=Path(f.file.name).name)
