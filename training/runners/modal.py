"""The Modal runner: spawns the engine on a Modal GPU and returns at once; the remote run reports back through the
signed internal endpoint (training/api/internal.py), which feeds the same services as the local runner."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils.module_loading import import_string

from training import estimate, services, specs, tracking
from training.engine.errors import ConfigError
from training.models import TrainingJob

logger = logging.getLogger(__name__)
SALT = "finetune.training.callback"


class ModalClient:
    """The only code that talks to Modal's client: spawn a run, cancel it. Tests replace this class alone."""

    def spawn(self, gpu: str, payload: dict[str, Any]) -> str:
        """Start the run on ``gpu``, Modal's GPU string: ``<TYPE>`` (one GPU) or ``<TYPE>:<N>`` (N GPUs on one
        host, e.g. ``H100:4``); the call's id."""
        import modal

        from training.engine.modal_app import APP_NAME

        kind, _, count = gpu.partition(":")
        fn = modal.Function.from_name(APP_NAME, f"train_{kind.replace('-', '_').lower()}")
        if count:  # the deployed function of that type asks for one GPU: this call's containers get N
            fn = fn.with_options(gpu=gpu)
        return str(fn.spawn(payload).object_id)

    def cancel(self, call_id: str) -> None:
        import modal

        modal.FunctionCall.from_id(call_id).cancel()


def get_client() -> Any:
    return import_string(settings.MODAL_CLIENT)()


def callback_token(job: TrainingJob) -> str:
    """A signed token naming the job and its attempt; forged, foreign or stale (earlier attempt) tokens are refused by
    the endpoints."""
    return signing.dumps({"job": job.pk, "attempt": job.attempts}, salt=SALT)


def check_token(token: str, job_id: int) -> dict[str, Any]:
    """The token's claims, or signing.BadSignature."""
    claims = signing.loads(token, salt=SALT, max_age=settings.MODAL_CALLBACK_TOKEN_MAX_AGE)
    if claims.get("job") != job_id:
        raise signing.BadSignature("token for another job")
    return claims


def stored_objects(job: TrainingJob) -> dict[str, tuple[str, str]]:
    """The stored objects a remote run of the job needs, by role: (key, sha256) of the base model's snapshot (none
    for the embedded model: it comes from its package), the model to continue from, the newest checkpoint and the
    one before it.
    ValueError when the job needs one that is not stored."""
    out: dict[str, tuple[str, str]] = {}
    base = job.base_model
    if base.source != base.Source.EMBEDDED:
        if not base.artifact_key:
            raise ValueError(f"the base model {base.repo_id} has no stored snapshot; download it again")
        out["base_model"] = (base.artifact_key, base.artifact_sha256)
    if job.init_from_job_id:
        produced = getattr(job.init_from_job, "produced_model", None)
        if produced is None or not produced.artifact_key:
            raise ValueError("the job to continue from has no stored model")
        out["init_from"] = (produced.artifact_key, produced.artifact_sha256)
    if job.checkpoint_key:
        out["checkpoint"] = (job.checkpoint_key, job.checkpoint_sha256)
    if job.previous_checkpoint_key:  # the fallback when the newest one turns out damaged
        out["previous_checkpoint"] = (job.previous_checkpoint_key, job.previous_checkpoint_sha256)
    return out


def build_payload(job: TrainingJob) -> dict[str, Any]:
    """What the remote entrypoint needs, none of it a path on this host: the spec (paths filled in remotely), the
    dataset files, base model, model to continue from and newest checkpoint as URLs of the internal endpoints (the
    stored objects by key and hash), the callback URL and token."""
    from pathlib import Path

    site = settings.SITE_URL.rstrip("/")
    base = job.base_model
    steps = {"checkpoint": job.last_checkpoint_step, "previous_checkpoint": job.previous_checkpoint_step}
    objects = {
        role: {
            "url": site + reverse("training-internal:object", args=[job.pk, role]),
            "sha256": sha256,
            **({"step": steps[role]} if role in steps else {}),
        }
        for role, (_key, sha256) in stored_objects(job).items()
    }
    spec = specs.build(job, Path("remote"), base_model=base.repo_id, remote=True).to_dict()
    token = callback_token(job)
    files, train_names, eval_names = [], [], []
    picked = list(job.eval_dataset.files.all()) if job.eval_dataset_id else []  # the user's evaluation dataset
    for f in [*job.dataset.files.all(), *picked]:
        held_out = f.dataset_id == job.eval_dataset_id if picked else f.role == "validation"
        if picked and not held_out and f.role == "validation":
            continue  # the training dataset's own split is not used when an evaluation dataset was picked
        name = specs.remote_file_name(f)
        files.append({"name": name, "url": site + reverse("training-internal:file", args=[job.pk, f.pk])})
        (eval_names if held_out else train_names).append(name)
    return {
        "spec": spec,
        "env": tracking.run_environment(job),  # tracker settings and secrets: the remote process's environment only
        "files": files,
        "train_names": train_names,
        "eval_names": eval_names,
        "token": token,
        "objects": objects,
        "callback_url": site + reverse("training-internal:events", args=[job.pk]),
        "runs_dir": settings.MODAL_RUNS_DIR or None,
    }


def gpu_request(job: TrainingJob) -> str:
    """The Modal GPU string a job's container asks for: its GPU type, with the count when the job trains on several
    (``num_processes`` N > 1: ``H100:4``, N GPUs of one host, one process each)."""
    count = estimate.processes(job.hyperparameters or {})
    return job.modal_gpu if count == 1 else f"{job.modal_gpu}:{count}"


def run(job: TrainingJob, worker_id: str) -> None:
    """Spawn the remote run and return; the job's lease now belongs to the remote call."""
    try:
        payload = build_payload(job)
    except (ValueError, ConfigError) as exc:  # a model the remote run cannot get, a tracker gone: say which
        services.fail_job(job.pk, f"Cannot start on Modal: {exc}", kind="config", worker_id=worker_id)
        return
    gpu = gpu_request(job)
    call_id = get_client().spawn(gpu, payload)
    TrainingJob.objects.filter(pk=job.pk).update(external_id=call_id, lease_owner=f"modal:{call_id}")
    services.record_event(
        job.pk, {"type": "log", "level": "info", "line": f"spawned on Modal ({gpu}), call {call_id}"}
    )
    logger.info("job %s: spawned on Modal %s as %s", job.pk, gpu, call_id)
