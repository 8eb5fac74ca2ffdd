"""Training job workflows: create (validated by the engine), claim with a lease, record events, complete, fail,
cancel, resume, continue, recover jobs whose worker died, and the pre-launch estimate."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, models, transaction
from django.dispatch import Signal
from django.utils import timezone

from accounts import quotas
from accounts.models import User
from datasets_app.models import Dataset
from finetune import artifacts
from finetune.exceptions import ServiceError
from finetune.redaction import hide_server_paths
from models_app.catalogue import find_usable_base_model
from models_app.models import FineTunedModel
from training.engine.errors import ConfigError
from training.engine.spec import METHODS, HyperParams, check_method_hyperparams

from . import events, pricing, tracking
from . import quotas as job_quotas
from .models import LogLine, MetricPoint, TrainingJob

logger = logging.getLogger(__name__)
# Celery tasks sent by name (training/tasks.py calls into this module, never the other way round).
RUN_TASK = "training.tasks.run_training_job"
EMAIL_TASK = "training.tasks.send_job_email"
WEBHOOK_TASK = "training.tasks.deliver_job_webhook"
PREFERENCE_FORMATS = {"preference", "hh_rlhf", "sharegpt_preference"}  # chosen/rejected pairs
UNPAIRED_FORMATS = {"kto"}  # single answers labelled desirable or undesirable
WEIGHTS = ("full", "lora", "qlora")
# Sent (job=...) inside the transaction that gives a job its final status; training.sweeps listens (it imports this
# module, never the other way round) to rank a sweep's variants.
job_finished = Signal()


# --- creation ---------------------------------------------------------------------------------------------------
def validate_hyperparameters(hyperparameters: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    """Check hyperparameters with the engine (and the rules of ``method``); a bad field answers 400 naming it."""
    if not isinstance(hyperparameters, dict):
        raise ServiceError("hyperparameters must be an object.", field="hyperparameters")
    try:
        hyper = HyperParams.from_dict(hyperparameters)
        if method is not None:
            check_method_hyperparams(method, hyper)
        return hyper.to_dict()
    except ConfigError as exc:
        message = str(exc)
        field = next((k for k in hyperparameters if message.startswith(k) or f" {k} " in message), None)
        raise ServiceError(message, field=f"hyperparameters.{field}" if field else "hyperparameters") from None


def resolve_dataset(owner: User, dataset_id: int, version: int | None) -> Dataset:
    """The user's dataset (or one of its versions), ready for training."""
    ds = Dataset.objects.filter(owner=owner, pk=dataset_id).first()
    if ds is None:
        raise ServiceError("Dataset not found.", field="dataset", status_code=400)
    if version is not None:
        ds = Dataset.objects.filter(owner=owner, lineage=ds.lineage, version=version).first()
        if ds is None:
            raise ServiceError(f"This dataset has no version {version}.", field="dataset_version")
    if ds.status != Dataset.Status.READY:
        raise ServiceError(
            f"Dataset '{ds.name}' v{ds.version} is {ds.status}, not ready: wait for validation or fix its errors.",
            field="dataset",
        )
    return ds


def _check_method_fits_data(method: str, ds: Dataset) -> None:
    is_pref, is_kto = ds.format in PREFERENCE_FORMATS, ds.format in UNPAIRED_FORMATS
    if method in ("dpo", "orpo") and is_kto:
        raise ServiceError(
            f"{method.upper()} needs chosen/rejected pairs; '{ds.name}' is KTO data (single answers "
            "labelled desirable or undesirable). Train it with KTO.",
            field="method",
        )
    if method in ("dpo", "orpo") and not is_pref:
        raise ServiceError(
            f"{method.upper()} needs preference data (prompt/chosen/rejected); '{ds.name}' is "
            f"{ds.format or 'not preference'} data. Use SFT, or upload preference pairs.",
            field="method",
        )
    if method == "kto" and not is_kto:
        raise ServiceError(
            f"KTO needs rows labelled desirable or undesirable (a 'label' column); '{ds.name}' is "
            f"{ds.format or 'unlabelled'} data."
            + (" Train pairs with DPO or ORPO." if is_pref else " Use SFT for it."),
            field="method",
        )
    if method == "sft" and is_pref:
        raise ServiceError(
            f"'{ds.name}' holds preference pairs ({ds.format}); train it with DPO or ORPO.", field="method"
        )
    if method == "sft" and is_kto:
        labels = ((ds.report or {}).get("statistics") or {}).get("labels") or {}
        undesirable = (
            f" ({labels['undesirable']} of {labels['desirable'] + labels['undesirable']} rows are undesirable)"
            if {"desirable", "undesirable"} <= labels.keys()
            else ""
        )
        raise ServiceError(
            f"'{ds.name}' is KTO data: its 'label' column marks answers desirable or not{undesirable}, "
            "and SFT would teach the model the undesirable ones too. Train it with KTO, or make a "
            "version with the preprocessing step 'Keep only desirable rows' (keep_desirable) and "
            "train SFT on that.",
            field="method",
        )


MAX_COMPARE_PROMPTS = 100


def evaluation_source(
    owner: User,
    ds: Dataset,
    hyper: dict[str, Any],
    compare_prompts: int,
    eval_dataset_id: int | None,
    eval_dataset_version: int | None,
) -> Dataset | None:
    """Check a job's evaluation choices; return the evaluation dataset the user picked (None: the training dataset's
    validation split, or ``validation_split`` of its rows). Its rows must read like the training rows."""
    if not 0 <= compare_prompts <= MAX_COMPARE_PROMPTS:
        raise ServiceError(f"compare_prompts must be between 0 and {MAX_COMPARE_PROMPTS}.", field="compare_prompts")
    eval_ds = None
    if eval_dataset_id is not None:
        try:
            eval_ds = resolve_dataset(owner, eval_dataset_id, eval_dataset_version)
        except ServiceError as exc:
            field = "eval_dataset_version" if exc.field == "dataset_version" else "eval_dataset"
            raise ServiceError(f"Evaluation dataset: {exc.message}", field=field) from None
        if eval_ds.pk == ds.pk:
            raise ServiceError(
                "The evaluation dataset is the training dataset: scores on rows the model trained on say nothing. "
                "Pick another dataset, or leave it empty to use the training dataset's validation split.",
                field="eval_dataset",
            )
        if (eval_ds.format or "") != (ds.format or ""):
            raise ServiceError(
                f"The evaluation dataset '{eval_ds.name}' is {eval_ds.format or 'of no known format'}, the training "
                f"dataset is {ds.format}: pick one in the same format.",
                field="eval_dataset",
            )
        if (eval_ds.column_mapping or {}) != (ds.column_mapping or {}):
            raise ServiceError(
                f"The evaluation dataset '{eval_ds.name}' maps its columns differently from the training dataset; "
                "give both the same column mapping.",
                field="eval_dataset",
            )
    held_out = eval_ds is not None or ds.files.filter(role="validation").exists() or hyper["validation_split"] > 0
    if compare_prompts and not held_out:
        raise ServiceError(
            "compare_prompts needs held-out prompts: pick an evaluation dataset, give the dataset a validation "
            "split, or set hyperparameters.validation_split above 0.",
            field="compare_prompts",
        )
    return eval_ds


MODAL_MAX_GPUS_PER_CONTAINER = 8  # one host's GPUs (num_processes N > 1 asks for `<TYPE>:<N>`)
MODAL_MAX_GPUS_BY_TYPE = {"A10G": 4}  # Modal's A10 hosts have 4


def modal_gpus_per_container(gpu: str) -> int:
    """How many GPUs of type ``gpu`` one Modal container can have (a run on N processes needs N on one host)."""
    return MODAL_MAX_GPUS_BY_TYPE.get(gpu, MODAL_MAX_GPUS_PER_CONTAINER)


def _check_sharding(hyper: dict[str, Any], *, weights: str, backend: str) -> None:
    """Refuse at creation what the engine would refuse when the job starts: ``fsdp``/``zero3`` where the workers
    have no GPU (local workers on a deployment without ``TRAINING_DEVICE_MEMORY_GB``), ``fsdp`` with QLoRA."""
    from training.engine.memory import local_device_type
    from training.engine.trainers.sharding import resolve_sharding

    device_type = "cuda" if backend == "modal" else local_device_type(settings.TRAINING_DEVICE_MEMORY_GB)
    try:
        resolve_sharding(
            sharding=str(hyper.get("sharding") or "auto"),
            processes=int(hyper.get("num_processes") or 1),
            weights=weights,
            device_type=device_type,
            check_installed=False,
        )
    except ConfigError as exc:
        raise ServiceError(str(exc), field="hyperparameters.sharding") from exc


def create_job(
    *,
    owner: User,
    name: str,
    base_model_id: int,
    dataset_id: int,
    dataset_version: int | None = None,
    method: str = "sft",
    weights: str = "lora",
    hyperparameters: dict[str, Any] | None = None,
    backend: str = "local",
    modal_gpu: str = "",
    init_from_job: TrainingJob | None = None,
    compare_prompts: int = 0,
    eval_dataset_id: int | None = None,
    eval_dataset_version: int | None = None,
    hold: bool = False,
) -> TrainingJob:
    """Validate and queue a training job (enqueued once the transaction commits). ``hold``: created ``waiting`` for
    a concurrent-jobs slot instead (a sweep's variants beyond the limit; ``release_waiting`` queues it)."""
    if method not in METHODS:
        raise ServiceError(f"method must be one of {', '.join(METHODS)}, got '{method}'.", field="method")
    if weights not in WEIGHTS:
        raise ServiceError(f"weights must be one of {', '.join(WEIGHTS)}, got '{weights}'.", field="weights")
    if backend not in TrainingJob.Backend.values:
        raise ServiceError("backend must be 'local' or 'modal'.", field="backend")
    if backend == "modal":
        if modal_gpu not in pricing.modal_gpus():
            raise ServiceError(f"modal_gpu must be one of {', '.join(pricing.modal_gpus())}.", field="modal_gpu")
    base = find_usable_base_model(owner, base_model_id, available=True)  # private/gated: the owner's token reads it
    if base is None:
        raise ServiceError("Base model not found or not downloaded yet.", field="base_model")
    ds = resolve_dataset(owner, dataset_id, dataset_version)
    _check_method_fits_data(method, ds)
    hyper = validate_hyperparameters(hyperparameters or {}, method)
    tracking.check_report_to(owner, hyper)
    gpus = int(hyper.get("num_processes") or 1)
    if backend == "modal" and gpus > modal_gpus_per_container(modal_gpu):
        raise ServiceError(
            f"A Modal container holds at most {modal_gpus_per_container(modal_gpu)} {modal_gpu} GPUs: set "
            "num_processes to that or fewer, or pick another GPU.",
            field="hyperparameters.num_processes",
        )
    _check_sharding(hyper, weights=weights, backend=backend)
    eval_ds = evaluation_source(owner, ds, hyper, compare_prompts, eval_dataset_id, eval_dataset_version)
    if base.context_length and hyper["max_length"] > base.context_length:
        raise ServiceError(
            f"max_length {hyper['max_length']} is above {base.name}'s context length {base.context_length}.",
            field="hyperparameters.max_length",
        )
    # Quotas: the estimate is taken outside the lock; the checks run under the user's row lock.
    est_s, est_usd = job_quotas.estimated_cost(
        TrainingJob(
            owner=owner,
            base_model=base,
            dataset=ds,
            method=method,
            weights=weights,
            hyperparameters=hyper,
            backend=backend,
            modal_gpu=modal_gpu,
        )
    )
    with transaction.atomic():
        quotas.lock_user(owner.pk)  # serializes parallel creates: the counts below include every committed job
        job_quotas.check_can_create_job(owner, backend, estimate_s=est_s, estimate_usd=est_usd, concurrent=not hold)
        job = TrainingJob.objects.create(
            status=TrainingJob.Status.WAITING if hold else TrainingJob.Status.QUEUED,
            owner=owner,
            name=(name or f"{base.name} on {ds.name}").strip()[:200],
            base_model=base,
            dataset=ds,
            method=method,
            weights=weights,
            hyperparameters=hyper,
            backend=backend,
            modal_gpu=modal_gpu,
            init_from_job=init_from_job,
            compare_prompts=compare_prompts,
            eval_dataset=eval_ds,
            dataset_sha256=(ds.files.first().sha256 if ds.files.exists() else ""),
        )
        if not hold:
            enqueue(job)
    logger.info("job %s created by user %s%s", job.pk, owner.pk, " (waiting for a slot)" if hold else "")
    return job


def release_waiting(owner_id: int) -> list[int]:
    """Queue the owner's waiting jobs, oldest first, while the concurrent-jobs limit has room; the ids queued.
    Called when one of the owner's jobs finishes and periodically (``recover_expired_leases``), so a raised limit
    or a missed call is caught up."""
    with transaction.atomic():
        quotas.lock_user(owner_id)
        free = job_quotas.free_slots(owner_id)
        if free <= 0:
            return []
        waiting = list(
            TrainingJob.objects.select_for_update()
            .filter(owner_id=owner_id, status=TrainingJob.Status.WAITING, cancel_requested=False)
            .order_by("created", "id")[:free]
        )
        for job in waiting:
            job.status = TrainingJob.Status.QUEUED
            job.save(update_fields=["status", "updated"])
            events.publish_status(job.pk, job.status)
            enqueue(job)
    if waiting:
        logger.info("user %s: queued waiting jobs %s", owner_id, [j.pk for j in waiting])
    return [j.pk for j in waiting]


def enqueue(job: TrainingJob) -> None:
    """Send the job to the `training` queue after commit (the task by name: services never import the tasks)."""
    transaction.on_commit(lambda: current_app.send_task(RUN_TASK, args=[job.pk], queue="training"))


# --- execution: lease -------------------------------------------------------------------------------------------
def claim_job(job_id: int, worker_id: str) -> bool:
    """Take the job for this worker: a conditional UPDATE, so a second delivery finds a live lease and backs off."""
    owner_id = TrainingJob.objects.filter(pk=job_id).values_list("owner_id", flat=True).first()
    if owner_id is None:
        return False
    with transaction.atomic():
        # Quotas: the owner's row lock first (same order as create_job), so parallel starts of one user's
        # jobs count each other's reservations.
        quotas.lock_user(owner_id)
        job = (
            TrainingJob.objects.select_for_update(of=("self",))
            .select_related("dataset", "base_model")
            .filter(pk=job_id)
            .first()
        )
        now = timezone.now()
        lease = now + timedelta(seconds=settings.TRAINING_LEASE_SECONDS)
        if job is None or job.status not in (TrainingJob.Status.QUEUED, TrainingJob.Status.RECOVERING):
            return False
        if job.lease_expires and job.lease_expires > now and job.lease_owner != worker_id:
            return False
        if job.cancel_requested:
            _finish(job, TrainingJob.Status.CANCELLED, "")
            return False
        try:
            reserved_s = job_quotas.check_can_start(job)
        except quotas.QuotaExceeded as exc:
            logger.info("job %s: refused at start by quota %s", job_id, exc.quota)
            _finish(job, TrainingJob.Status.FAILED, exc.message, "quota")
            return False
        job.status = TrainingJob.Status.STARTING
        job.lease_owner, job.lease_expires, job.heartbeat_at = worker_id, lease, now
        job.attempts += 1
        job.attempt_history = [
            *job.attempt_history,
            {
                "attempt": job.attempts,
                "worker": worker_id,
                "started": now.isoformat(),
                "reserved_s": round(reserved_s, 1),
            },
        ]
        job.started = job.started or now
        job.save()
    events.publish_status(job_id, TrainingJob.Status.STARTING, attempts=job.attempts)
    return True


def renew_lease(job_id: int, worker_id: str) -> bool:
    """Heartbeat: extend the lease; False means the job is no longer ours (it must stop)."""
    now = timezone.now()
    n = TrainingJob.objects.filter(pk=job_id, lease_owner=worker_id, status__in=TrainingJob.ACTIVE).update(
        lease_expires=now + timedelta(seconds=settings.TRAINING_LEASE_SECONDS), heartbeat_at=now
    )
    return n == 1


def should_stop(job_id: int, worker_id: str) -> bool:
    """True when the user asked to cancel or the lease was lost."""
    row = TrainingJob.objects.filter(pk=job_id).values("cancel_requested", "lease_owner", "status").first()
    return (
        row is None
        or row["cancel_requested"]
        or row["lease_owner"] != worker_id
        or (row["status"] not in TrainingJob.ACTIVE)
    )


def enforce_running_quota(job_id: int) -> bool:
    """Stop a running job whose owner's monthly GPU minutes (or Modal spend) ran out while it trained: ask it to
    cancel (the engine saves a checkpoint within one step) and record why. True when it was asked to stop now."""
    job = TrainingJob.objects.filter(pk=job_id, status__in=TrainingJob.ACTIVE, cancel_requested=False).first()
    if job is None:
        return False
    exceeded = job_quotas.running_over_quota(job)
    if exceeded is None:
        return False
    message = (
        f"Stopped by quota: {exceeded.message} A checkpoint was saved at the last step; resume the job once "
        "the quota allows it."
    )
    asked = TrainingJob.objects.filter(pk=job_id, status__in=TrainingJob.ACTIVE, cancel_requested=False).update(
        cancel_requested=True, error=message, error_kind="quota"
    )
    if asked:
        logger.info("job %s: stopping, quota %s reached mid-run", job_id, exceeded.quota)
        record_event(job_id, {"type": "log", "level": "warning", "line": message})
    return bool(asked)


# --- execution: events ------------------------------------------------------------------------------------------
def _next_seq(job_id: int, column: str, **updates: Any) -> int:
    sets = ", ".join([f"{column} = {column} + 1", *[f"{k} = %s" for k in updates], "updated = now()"])
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE training_trainingjob SET {sets} WHERE id = %s RETURNING {column}",  # noqa: S608
            [*updates.values(), job_id],
        )
        row = cur.fetchone()
    if row is None:
        raise TrainingJob.DoesNotExist(job_id)
    return int(row[0])


def metric_payload(p: MetricPoint) -> dict[str, Any]:
    return {
        "seq": p.seq,
        "kind": p.kind,
        "step": p.step,
        "epoch": p.epoch,
        "loss": p.loss,
        "eval_loss": p.eval_loss,
        "learning_rate": p.learning_rate,
        "grad_norm": p.grad_norm,
        "memory_mb": p.memory_mb,
        "tokens_per_s": p.tokens_per_s,
        "eta_s": p.eta_s,
        "time": p.time.isoformat(),
        **(p.extra or {}),
    }


def record_event(job_id: int, event: dict[str, Any]) -> None:
    """Store one engine event (metric, eval, status, log, checkpoint) and push it to the job's sockets."""
    kind = event.get("type")
    now = timezone.now()
    if kind in ("metric", "eval"):
        total = int(event.get("total_steps") or 0)
        step = int(event.get("step") or 0)
        updates: dict[str, Any] = {"current_step": step}
        if kind == "metric":
            updates.update(total_steps=total, progress=(step / total) if total else 0.0, eta_s=event.get("eta_s"))
        extra = {
            k: event[k]
            for k in ("total_steps", "samples_per_s", "tokens", "elapsed_s", "perplexity", "phase", "memory")
            if k in event
        }
        with transaction.atomic():  # a seq and its point commit together: a lost connection leaves no hole
            seq = _next_seq(job_id, "metric_seq", **updates)
            point = MetricPoint.objects.create(
                job_id=job_id,
                seq=seq,
                kind=kind,
                step=step,
                epoch=event.get("epoch"),
                loss=event.get("loss") if kind == "metric" else None,
                eval_loss=event.get("eval_loss"),
                learning_rate=event.get("learning_rate"),
                grad_norm=event.get("grad_norm"),
                memory_mb=event.get("memory_mb"),
                tokens_per_s=event.get("tokens_per_s"),
                eta_s=event.get("eta_s"),
                time=now,
                extra=extra,
            )
        events.publish(job_id, {"type": "metric", **metric_payload(point)})
    elif kind == "log":
        line = hide_server_paths(str(event.get("line") or event.get("message") or ""))[:10000]
        with transaction.atomic():
            seq = _next_seq(job_id, "log_seq")
            LogLine.objects.create(
                job_id=job_id, seq=seq, level=str(event.get("level") or "info")[:8], line=line, time=now
            )
        events.publish(job_id, {"type": "log", "seq": seq, "level": event.get("level", "info"), "line": line})
    elif kind == "status":
        phase = str(event.get("status") or "")
        updates_status: dict[str, Any] = {"phase": phase}
        if phase == "training":
            TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.STARTING).update(
                status=TrainingJob.Status.RUNNING
            )
        TrainingJob.objects.filter(pk=job_id).update(**updates_status)
        job = TrainingJob.objects.only("status").get(pk=job_id)
        events.publish_status(job_id, job.status, phase=phase, message=str(event.get("message") or ""))
        if event.get("message"):
            record_event(job_id, {"type": "log", "level": "info", "line": f"[{phase}] {event['message']}"})
    elif kind == "checkpoint":
        # Written on the run's host; the job names it (last_checkpoint_step, checkpoint_key) only once it is stored
        # (record_checkpoint, by the local runner's reporter or the remote run's upload).
        pass


def _announce(job_id: int) -> None:
    """Once the current transaction commits, send the job's outcome by email and to the owner's webhook (Celery tasks
    on settings.NOTIFICATIONS_QUEUE, see training/notifications.py; a failing webhook never touches the job)."""

    def enqueue() -> None:
        for task in (EMAIL_TASK, WEBHOOK_TASK):
            current_app.send_task(task, args=[job_id], queue=settings.NOTIFICATIONS_QUEUE)

    transaction.on_commit(enqueue, robust=True)  # a broker hiccup must not surface in the job's completion


def _finish(job: TrainingJob, status: str, error: str, kind: str = "") -> None:
    job.status, job.error, job.error_kind = status, hide_server_paths(error), kind
    job.finished = timezone.now()
    job.lease_owner, job.lease_expires = "", None
    if job.attempt_history:
        job.attempt_history[-1]["ended"] = job.finished.isoformat()
        job.attempt_history[-1]["outcome"] = status
    pricing.account_cost(job)
    job.save()
    events.publish_status(job.pk, status, error=error)
    if status in (TrainingJob.Status.SUCCEEDED, TrainingJob.Status.FAILED):
        _announce(job.pk)
    if job.sweep_id is not None:
        job_finished.send(sender=TrainingJob, job=job)
    owner_id = job.owner_id
    if TrainingJob.objects.filter(owner_id=owner_id, status=TrainingJob.Status.WAITING).exists():
        transaction.on_commit(lambda: release_waiting(owner_id), robust=True)  # its slot is free


def complete_job(job_id: int, worker_id: str, result: dict[str, Any]) -> FineTunedModel | None:
    """Record a finished run: the result, the produced model, status succeeded (or cancelled)."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().select_related("base_model").get(pk=job_id)
        if job.lease_owner != worker_id or job.status not in TrainingJob.ACTIVE:
            logger.warning("job %s: result from %s ignored (lease lost)", job_id, worker_id)
            return None
        job.result = result
        job.versions = result.get("versions") or {}
        if result.get("status") == "cancelled":
            stopped_by_quota = (
                job.error_kind == "quota"
            )  # enforce_running_quota said why; a user's cancel needs no words
            _finish(
                job,
                TrainingJob.Status.CANCELLED,
                job.error if stopped_by_quota else "",
                "quota" if stopped_by_quota else "",
            )
            return None
        stored = result.get("artifact") or {}
        model = FineTunedModel.objects.create(
            owner_id=job.owner_id,
            name=job.name,
            version=_next_model_version(job.owner_id, job.name),
            base_model=job.base_model,
            job=job,
            method=job.method,
            weights=job.weights,
            artifact_key=str(stored.get("artifact_key") or ""),
            artifact_sha256=str(stored.get("artifact_sha256") or ""),
            artifact_size=int(stored.get("artifact_size") or 0),
            is_adapter=bool(stored.get("is_adapter", True)),
            metrics=result.get("metrics") or {},
            hyperparameters=job.hyperparameters,
            evaluation=result.get("comparison") or {},
        )
        job.progress = 1.0
        # The final model is stored: the checkpoints are no longer needed.
        job.checkpoint_key, job.checkpoint_sha256, job.checkpoint_size = "", "", 0
        job.previous_checkpoint_key, job.previous_checkpoint_sha256 = "", ""
        job.previous_checkpoint_size = job.previous_checkpoint_step = 0
        _finish(job, TrainingJob.Status.SUCCEEDED, "")
        # Every checkpoint object of the job goes: the recorded ones and any a killed attempt uploaded unrecorded.
        transaction.on_commit(lambda: artifacts.delete_under(checkpoint_prefix(job_id)))
    events.publish(job_id, {"type": "status", "status": "succeeded", "model": model.pk, "error": ""})
    return model


def checkpoint_prefix(job_id: int) -> str:
    """Where a job's checkpoints are stored (training.workspace.store_checkpoint)."""
    return f"artifacts/checkpoints/job-{job_id}"


def record_checkpoint(job_id: int, worker_id: str, step: int, stored: artifacts.StoredArtifact) -> bool:
    """Name a checkpoint already uploaded to the store as the job's newest (the attempt must still hold the lease).
    The newest stored one before it (by step) is kept as the previous checkpoint, for a resume whose newest turns out
    damaged; any other one is deleted from the store. False (and the upload removed) when the attempt lost its job."""
    with transaction.atomic():
        job = (
            TrainingJob.objects.select_for_update()
            .only(
                "lease_owner",
                "status",
                "checkpoint_key",
                "checkpoint_sha256",
                "checkpoint_size",
                "last_checkpoint_step",
                "previous_checkpoint_key",
                "previous_checkpoint_sha256",
                "previous_checkpoint_size",
                "previous_checkpoint_step",
            )
            .get(pk=job_id)
        )
        if job.lease_owner != worker_id or job.status not in TrainingJob.ACTIVE:
            if stored.key not in (job.checkpoint_key, job.previous_checkpoint_key):
                transaction.on_commit(lambda: artifacts.delete(stored.key))
            logger.warning("job %s: checkpoint of step %s from %s dropped (lease lost)", job_id, step, worker_id)
            return False
        held = [
            (job.last_checkpoint_step, job.checkpoint_key, job.checkpoint_sha256, job.checkpoint_size),
            (
                job.previous_checkpoint_step,
                job.previous_checkpoint_key,
                job.previous_checkpoint_sha256,
                job.previous_checkpoint_size,
            ),
        ]
        held = [h for h in held if h[1] and h[1] != stored.key]
        # A resumed run that went back to an earlier checkpoint saves steps at or below a newer stored one: that
        # newer one (damaged, or from the abandoned path) is dropped, never kept as "previous".
        older = [h for h in held if h[0] < step]
        previous = max(older, default=(0, "", "", 0))
        dropped = [h[1] for h in held if h[1] != previous[1]]
        TrainingJob.objects.filter(pk=job_id).update(
            checkpoint_key=stored.key,
            checkpoint_sha256=stored.sha256,
            checkpoint_size=stored.size,
            last_checkpoint_step=step,
            previous_checkpoint_step=previous[0],
            previous_checkpoint_key=previous[1],
            previous_checkpoint_sha256=previous[2],
            previous_checkpoint_size=previous[3],
        )
        transaction.on_commit(lambda: [artifacts.delete(key) for key in dropped])
    events.publish(job_id, {"type": "checkpoint", "step": step})
    return True


def drop_damaged_checkpoint(job_id: int, key: str, reason: str) -> int | None:
    """The job's newest stored checkpoint `key` cannot be used (it no longer matches its hash, or it would not
    load): the previous one becomes the newest, the damaged object is deleted and the job's log says so. Returns the
    step resumed from instead, or None when there is no previous checkpoint (the job starts over)."""
    with transaction.atomic():
        job = (
            TrainingJob.objects.select_for_update()
            .only(
                "checkpoint_key",
                "last_checkpoint_step",
                "previous_checkpoint_key",
                "previous_checkpoint_sha256",
                "previous_checkpoint_size",
                "previous_checkpoint_step",
            )
            .get(pk=job_id)
        )
        if job.checkpoint_key != key:
            return None
        damaged_step = job.last_checkpoint_step
        fallback = job.previous_checkpoint_step if job.previous_checkpoint_key else None
        TrainingJob.objects.filter(pk=job_id).update(
            checkpoint_key=job.previous_checkpoint_key,
            checkpoint_sha256=job.previous_checkpoint_sha256,
            checkpoint_size=job.previous_checkpoint_size,
            last_checkpoint_step=job.previous_checkpoint_step,
            previous_checkpoint_key="",
            previous_checkpoint_sha256="",
            previous_checkpoint_size=0,
            previous_checkpoint_step=0,
        )
        transaction.on_commit(lambda: artifacts.delete(key))
    logger.warning("job %s: stored checkpoint %s of step %s is damaged: %s", job_id, key, damaged_step, reason)
    then = (
        f"resuming from the checkpoint before it, step {fallback}"
        if fallback is not None
        else "no earlier checkpoint is stored: training starts from the beginning"
    )
    record_event(
        job_id,
        {
            "type": "log",
            "level": "warning",
            "line": f"the stored checkpoint of step {damaged_step} is damaged ({reason}); {then}",
        },
    )
    return fallback


def _next_model_version(owner_id: int, name: str) -> int:
    last = FineTunedModel.objects.filter(owner_id=owner_id, name=name).order_by("-version").first()
    return (last.version + 1) if last else 1


def fail_job(job_id: int, message: str, *, kind: str = "internal", worker_id: str | None = None) -> None:
    """Mark a job failed with a message the user can read."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job_id)
        if worker_id is not None and job.lease_owner != worker_id:
            return
        if job.status in TrainingJob.FINISHED:
            return
        _finish(job, TrainingJob.Status.FAILED, message, kind)
    logger.info("job %s failed (%s): %s", job_id, kind, message)


def release_for_retry(job_id: int, worker_id: str, reason: str) -> None:
    """An infrastructure problem stopped this attempt: give the job back (it resumes from its checkpoint)."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job_id)
        if job.lease_owner != worker_id:
            return
        _requeue_or_fail(job, reason)


def _requeue_or_fail(job: TrainingJob, reason: str) -> None:
    if job.attempts >= settings.TRAINING_MAX_ATTEMPTS:
        _finish(
            job,
            TrainingJob.Status.FAILED,
            f"The job was interrupted {job.attempts} times ({reason}); giving "
            "up. Resume it to try again from its last checkpoint.",
            "infrastructure",
        )
        return
    job.status = TrainingJob.Status.RECOVERING
    job.lease_owner, job.lease_expires = "", None
    if job.attempt_history:
        job.attempt_history[-1].update(ended=timezone.now().isoformat(), outcome=f"interrupted: {reason}")
    pricing.account_cost(job)
    job.save()
    events.publish_status(job.pk, job.status, error="")
    enqueue(job)


def recover_expired_leases() -> int:
    """Beat: jobs whose worker stopped renewing the lease are re-queued (within the retry budget), and waiting
    jobs are queued where their owner has a free slot."""
    now = timezone.now()
    count = 0
    ids = list(
        TrainingJob.objects.filter(
            status__in=[TrainingJob.Status.STARTING, TrainingJob.Status.RUNNING],
            backend=TrainingJob.Backend.LOCAL,
            lease_expires__lt=now,
        ).values_list("pk", flat=True)
    )
    for pk in ids:
        with transaction.atomic():
            job = TrainingJob.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if job is None or job.lease_expires is None or job.lease_expires >= now:
                continue
            logger.warning("job %s: lease of %s expired, recovering", pk, job.lease_owner)
            if job.cancel_requested:
                _finish(job, TrainingJob.Status.CANCELLED, "")
            else:
                _requeue_or_fail(job, "worker lost")
            count += 1
    count += _recover_silent_modal_runs(now)
    # Waiting jobs whose owner has a free slot (a raised limit, a finish whose release did not run).
    owners = TrainingJob.objects.filter(status=TrainingJob.Status.WAITING).values_list("owner_id", flat=True)
    for owner_id in sorted(set(owners)):
        count += len(release_waiting(owner_id))
    return count


def _recover_silent_modal_runs(now: Any) -> int:
    """Modal runs hold no local lease: a run that stopped calling back (container lost, app stopped) for longer than
    MODAL_HEARTBEAT_TIMEOUT_S is re-queued like a lost worker (it resumes from its last checkpoint on the volume)."""
    limit = now - timedelta(seconds=settings.MODAL_HEARTBEAT_TIMEOUT_S)
    stale = TrainingJob.objects.filter(
        status__in=[TrainingJob.Status.STARTING, TrainingJob.Status.RUNNING],
        backend=TrainingJob.Backend.MODAL,
        lease_owner__startswith="modal:",
    )
    stale = stale.filter(models.Q(heartbeat_at__lt=limit) | models.Q(heartbeat_at__isnull=True, started__lt=limit))
    count = 0
    for pk in list(stale.values_list("pk", flat=True)):
        with transaction.atomic():
            job = TrainingJob.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            last = (job.heartbeat_at or job.started) if job else None
            if job is None or job.status in TrainingJob.FINISHED or last is None or last >= limit:
                continue
            logger.warning("job %s: the Modal run %s has not reported since %s, recovering", pk, job.external_id, last)
            if job.cancel_requested:
                _finish(job, TrainingJob.Status.CANCELLED, "")
            else:
                _requeue_or_fail(job, "the Modal run stopped reporting")
            count += 1
    return count


# --- user actions -----------------------------------------------------------------------------------------------
def request_cancel(job: TrainingJob) -> TrainingJob:
    """Cancel: a queued job stops at once; a running one stops within one step (a checkpoint is saved)."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if job.status in TrainingJob.FINISHED:
            raise ServiceError(f"The job already {job.status}.", status_code=409)
        job.cancel_requested = True
        job.save(update_fields=["cancel_requested", "updated"])
        idle = (TrainingJob.Status.WAITING, TrainingJob.Status.QUEUED, TrainingJob.Status.RECOVERING)
        if job.status in idle and not job.lease_owner:
            _finish(job, TrainingJob.Status.CANCELLED, "")
    return job


def resume_job(job: TrainingJob) -> TrainingJob:
    """Queue a failed or cancelled job again; it resumes from its last complete checkpoint."""
    with transaction.atomic():
        quotas.lock_user(job.owner_id)
        job = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if job.status not in (TrainingJob.Status.FAILED, TrainingJob.Status.CANCELLED):
            raise ServiceError(
                f"Only a failed or cancelled job can be resumed; this one is {job.status}.", status_code=409
            )
        job_quotas.check_can_create_job(job.owner, job.backend)
        if job.error_kind == "infrastructure":
            job.attempts = 0  # a fresh retry budget after the user looked at it
        job.status, job.error, job.error_kind, job.cancel_requested = TrainingJob.Status.QUEUED, "", "", False
        job.finished = None
        job.save()
        events.publish_status(job.pk, job.status)
        enqueue(job)
    return job


def continue_job(job: TrainingJob, *, extra_epochs: float) -> TrainingJob:
    """Start a new run from a succeeded job's model with more epochs."""
    if job.status != TrainingJob.Status.SUCCEEDED:
        raise ServiceError("Only a succeeded job can be continued.", status_code=409)
    if not 0 < extra_epochs <= 100:
        raise ServiceError("extra_epochs must be > 0 and <= 100.", field="extra_epochs")
    hyper = {**job.hyperparameters, "num_train_epochs": extra_epochs, "max_steps": -1}
    # The new version goes under the produced model's current name (it may have been renamed since).
    produced = FineTunedModel.objects.filter(job=job).first()
    name = produced.name if produced is not None else job.name
    return create_job(
        owner=job.owner,
        name=name,
        base_model_id=job.base_model_id,
        dataset_id=job.dataset_id,
        method=job.method,
        weights=job.weights,
        hyperparameters=hyper,
        backend=job.backend,
        modal_gpu=job.modal_gpu,
        init_from_job=job,
        compare_prompts=job.compare_prompts,
        eval_dataset_id=job.eval_dataset_id,
    )


def delete_job(job: TrainingJob) -> None:
    """Delete a finished job and its metrics (a running one must be cancelled first)."""
    if job.status in TrainingJob.UNFINISHED:
        raise ServiceError("Cancel the job before deleting it.", status_code=409)
    checkpoints, prefix = (job.checkpoint_key, job.previous_checkpoint_key), checkpoint_prefix(job.pk)
    job.delete()
    for key in checkpoints:
        artifacts.delete(key)
    artifacts.delete_under(prefix)


def sweep_orphan_checkpoints() -> int:
    """Beat: delete the stored checkpoint folders that no job needs any more: those of succeeded jobs (the final
    model is stored; the on-commit deletion of ``complete_job`` did not run, e.g. the worker died right after the
    commit, or a stale attempt uploaded after it) and of jobs that no longer exist (``delete_job`` stopped between
    the row and the files). Folders of unfinished, failed and cancelled jobs stay: they are resumed or retried from.
    Returns how many objects were removed."""
    folders = artifacts.folders_under(checkpoint_prefix(0).rsplit("/", 1)[0])
    by_id = {int(name[4:]): name for name in folders if name.startswith("job-") and name[4:].isdigit()}
    if not by_id:
        return 0
    kept = set(
        TrainingJob.objects.filter(pk__in=by_id)
        .exclude(status=TrainingJob.Status.SUCCEEDED)
        .values_list("pk", flat=True)
    )
    removed = 0
    for job_id in sorted(set(by_id) - kept):
        count = artifacts.delete_under(checkpoint_prefix(job_id))
        if count:
            logger.info("job %s: removed %s orphaned checkpoint object(s)", job_id, count)
        removed += count
    return removed


# --- operators (admin): requeue a stuck job ------------------------------------------------------------------------
def requeue_job(job: TrainingJob, *, reason: str = "requeued by an operator") -> TrainingJob:
    """Operators: queue an active job again. A queued job gets its message sent again (the claim is idempotent, so a
    duplicate is harmless); a starting/running one loses its lease now (its worker stops at the next heartbeat and
    drops its result) and is queued to resume from its last complete checkpoint. Finished jobs are retried instead."""
    with transaction.atomic():
        job = TrainingJob.objects.select_for_update().get(pk=job.pk)
        if job.status in TrainingJob.FINISHED:
            raise ServiceError(f"The job already {job.status}; retry it instead of requeueing it.", status_code=409)
        if job.status in (TrainingJob.Status.STARTING, TrainingJob.Status.RUNNING):
            job.status = TrainingJob.Status.RECOVERING
            job.lease_owner, job.lease_expires = "", None
            if job.attempt_history:
                job.attempt_history[-1].update(ended=timezone.now().isoformat(), outcome=f"interrupted: {reason}")
            pricing.account_cost(job)
            job.save()
            events.publish_status(job.pk, job.status, error="")
        enqueue(job)
    logger.info("job %s requeued (%s)", job.pk, reason)
    return job
