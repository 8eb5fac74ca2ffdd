"""Push to Hugging Face: whoami (write permission, namespace), create the repository, prepare the adapter or model
folder with its tokenizer, chat template and model card, and upload it as one commit with the owner's token."""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts import realtime as events
from accounts.models import User
from accounts.services import get_hf_token
from finetune.exceptions import ServiceError
from models_app.artifacts import base_model_folder, model_folder, require_files
from models_app.models import FineTunedModel, HubPush, TaskStatus

from .client import NO_TOKEN_MESSAGE, apply_upload_protocol, check_repo_id, describe_hub_error, hub_client, user_token

logger = logging.getLogger(__name__)


class PushFailed(Exception):
    """A push cannot go on; `message` is shown to the user."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message, self.retryable = message, retryable


def user_pushes(user: User) -> QuerySet[HubPush]:
    """The user's pushes (anybody else's are invisible: 404)."""
    return HubPush.objects.filter(owner=user).select_related("model")


def request_push(user: User, model_id: int, repo_name: str, private: bool) -> HubPush:
    """Queue a push of one of the user's models to `repo_name` (`name` under the user's namespace, or `namespace/name`
    for one of their organisations; the namespace is checked with whoami when the push runs)."""
    model = FineTunedModel.objects.filter(owner=user, pk=model_id).first()
    if model is None:
        raise ServiceError("Not found.", status_code=404)
    user_token(user)
    value = check_repo_id(repo_name, field_name="repo_name", namespace_required=False)
    require_files(model, "pushed")
    namespace = value.split("/")[0] if "/" in value else user.hf_username
    repo_id = f"{namespace}/{value.split('/')[-1]}" if namespace else value
    with transaction.atomic():
        push = HubPush.objects.create(
            owner=user,
            model=model,
            repo_id=repo_id,
            private=bool(private),
            stage="queued",
            repo_url=f"{settings.HF_ENDPOINT}/{repo_id}" if "/" in repo_id else "",
            run_token=uuid.uuid4().hex,
        )
        _enqueue_push(push)
    logger.info("push %s: model %s -> %s queued by user %s", push.pk, model.pk, repo_id, user.pk)
    return push


def _is_lost(push: HubPush) -> bool:
    """Queued or running for longer than any push takes: its worker died (a redelivered task finds it claimed)."""
    since = push.started or push.created
    stale = timezone.now() - timedelta(seconds=settings.HF_PUSH_STALE_SECONDS)
    return push.status in (TaskStatus.QUEUED, TaskStatus.RUNNING) and since is not None and since < stale


def retry_push(user: User, push_id: int) -> HubPush:
    """Run a failed (or lost) push again (a new commit on the same repository)."""
    with transaction.atomic():
        push = HubPush.objects.select_for_update().filter(owner=user, pk=push_id).first()
        if push is None:
            raise ServiceError("Not found.", status_code=404)
        if push.status != TaskStatus.FAILED and not _is_lost(push):
            raise ServiceError(f"Only a failed push can be retried; this one is {push.status}.", status_code=409)
        user_token(user)
        push.status, push.progress, push.stage, push.error = TaskStatus.QUEUED, 0.0, "queued (retry)", ""
        push.retryable, push.started, push.finished, push.run_token = False, None, None, uuid.uuid4().hex
        push.save()
        _enqueue_push(push)
    logger.info("push %s: retry queued by user %s", push.pk, user.pk)
    return push


def _enqueue_push(push: HubPush) -> None:
    args = [push.pk, push.run_token]
    transaction.on_commit(
        lambda: current_app.send_task("models_app.tasks.hub.push_to_hub", args=args, queue="default")
    )


class _PushReporter:
    """Stage and progress updates of one push run (ignored once another run took over) sent to the owner's pages."""

    def __init__(self, push: HubPush) -> None:
        self.push = push

    def __call__(self, stage: str, progress: float, **fields: Any) -> None:
        HubPush.objects.filter(pk=self.push.pk, run_token=self.push.run_token).update(
            stage=stage, progress=progress, **fields
        )
        events.publish_task_progress(
            self.push.owner_id, kind="push", task_id=self.push.pk, progress=progress, status=TaskStatus.RUNNING
        )

    def finish(self, status: str, **fields: Any) -> None:
        HubPush.objects.filter(pk=self.push.pk, run_token=self.push.run_token).update(
            status=status, finished=timezone.now(), **fields
        )
        progress = float(fields.get("progress", self.push.progress))
        events.publish_task_progress(
            self.push.owner_id, kind="push", task_id=self.push.pk, progress=progress, status=status
        )


def _resolve_namespace(push: HubPush, identity: dict[str, Any]) -> str:
    """The repo id to push to, after checking its namespace against whoami (the user or one of their orgs)."""
    user = str(identity.get("name") or "")
    orgs = [str(o.get("name")) for o in identity.get("orgs") or [] if isinstance(o, dict) and o.get("name")]
    if "/" not in push.repo_id:
        return f"{user}/{push.repo_id}"
    namespace, name = push.repo_id.split("/", 1)
    if namespace == user or namespace in orgs:
        return push.repo_id
    if namespace == push.owner.hf_username:  # filled in from a token saved earlier: use the current token's user
        return f"{user}/{name}"
    allowed = ", ".join([user, *orgs])
    raise PushFailed(
        f"Your Hugging Face token cannot push to the namespace {namespace!r}: it belongs to {user!r} "
        f"(namespaces you can use: {allowed})."
    )


def _token_role(identity: dict[str, Any]) -> str:
    auth = identity.get("auth") if isinstance(identity.get("auth"), dict) else {}
    access = auth.get("accessToken") if isinstance(auth.get("accessToken"), dict) else {}
    return str(access.get("role") or "")


def prepare_push_folder(model: FineTunedModel, out_dir: Path, *, repo_id: str, note: str = "") -> Path:
    """The folder uploaded to the Hub: the adapter (lora/qlora) or the full model folder, the tokenizer and chat
    template, and a model card whose YAML metadata names the base model, library, tags and license."""
    from training.engine.exporters import export_artifact, is_adapter_dir, write_model_card

    base = model.base_model
    public_base = base.public_id
    with model_folder(model) as folder, base_model_folder(base) as base_path:
        if model.weights in ("lora", "qlora") or is_adapter_dir(folder):
            artifact = export_artifact(
                "adapter",
                model_dir=str(folder),
                base_model_path=base_path,
                out_dir=str(out_dir),
                base_model_name=public_base,
                subdir="repo",
            )
        else:
            artifact = export_artifact(
                "merged", model_dir=str(folder), base_model_path=base_path, out_dir=str(out_dir), subdir="repo"
            )
    folder = Path(artifact.path)
    job = model.job
    datasets = [job.dataset.name] if job is not None and "/" in job.dataset.name else []
    card = Path(
        write_model_card(
            str(folder),
            base_model=public_base,
            base_model_note=base.provenance_note,
            datasets=datasets,
            method=model.method,
            weights=model.weights,
            hyperparameters=model.hyperparameters or {},
            metrics=model.metrics or {},
            evaluation=model.evaluation or None,
            license=base.license or "other",
            model_name=repo_id,
            extra={"tags": ["finetune"]},
        )
    )
    tag = f", tag {model.tag}" if model.tag else ""
    with open(card, "a", encoding="utf-8") as fh:
        fh.write(
            f"\n## Provenance\n\nPushed from finetune: model `{model.name}` version {model.version}{tag}"
            f"{(', ' + note) if note else ''}.\n"
        )
    return folder


def run_push(push_id: int, run_token: str) -> None:
    """Push one model to the Hub with its owner's token: whoami (write permission, namespace), create the repository,
    prepare the files, upload them as one commit (idempotent: a stale or repeated run token changes nothing)."""
    now = timezone.now()
    claimed = HubPush.objects.filter(pk=push_id, run_token=run_token, status=TaskStatus.QUEUED).update(
        status=TaskStatus.RUNNING,
        started=now,
        progress=0.02,
        stage="checking your Hugging Face token",
        error="",
        retryable=False,
    )
    if not claimed:
        logger.info("push %s: run %s is stale or done, skipping", push_id, run_token)
        return
    try:
        _run_claimed_push(push_id, now)
    except Exception:  # anything not handled below (e.g. the database): never leave the push "running"
        logger.exception("push %s: internal error", push_id)
        HubPush.objects.filter(pk=push_id, run_token=run_token, status=TaskStatus.RUNNING).update(
            status=TaskStatus.FAILED,
            finished=timezone.now(),
            retryable=True,
            error="Internal error while pushing; retry, or ask an operator to look at the worker logs.",
        )
        raise


def _run_claimed_push(push_id: int, now: datetime) -> None:
    push = HubPush.objects.select_related("owner", "model__base_model", "model__job__dataset").get(pk=push_id)
    report = _PushReporter(push)
    report("checking your Hugging Face token", 0.02)
    repo_id = push.repo_id
    try:
        token = get_hf_token(push.owner)
        if not token:
            raise PushFailed(NO_TOKEN_MESSAGE)
        api = hub_client(token)
        identity = api.whoami()
        if _token_role(identity) == "read":
            raise PushFailed(
                "Your Hugging Face token is read-only, so nothing can be uploaded with it: create a "
                "token with write permission on the Hub and save it in your profile, then retry."
            )
        repo_id = _resolve_namespace(push, identity)
        report("creating the repository", 0.1, repo_id=repo_id, repo_url=f"{settings.HF_ENDPOINT}/{repo_id}")
        repo_url = str(api.create_repo(repo_id, private=push.private, repo_type="model", exist_ok=True))
        report("preparing the files", 0.2, repo_url=repo_url)
        with tempfile.TemporaryDirectory(prefix=f"finetune-push-{push.pk}-") as tmp:
            folder = prepare_push_folder(
                push.model, Path(tmp), repo_id=repo_id, note=f"push #{push.pk} at {now:%Y-%m-%d %H:%M:%S} UTC"
            )
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            total = sum(p.stat().st_size for p in files)
            report(f"uploading {len(files)} files ({total / 1e6:.1f} MB) via {apply_upload_protocol()}", 0.4)
            started = time.monotonic()
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                repo_type="model",
                commit_message=f"Upload {push.model.name} v{push.model.version} from finetune",
                commit_description=f"finetune push #{push.pk}: {', '.join(p.name for p in files)}",
            )
        logger.info(
            "push %s: %s uploaded to %s in %.1f s (commit %s)",
            push.pk,
            total,
            repo_id,
            time.monotonic() - started,
            commit.oid,
        )
        report.finish(
            TaskStatus.SUCCEEDED,
            progress=1.0,
            stage=f"uploaded {len(files)} files",
            commit_sha=str(commit.oid or "")[:64],
            repo_url=repo_url,
        )
    except PushFailed as exc:
        _fail_push(report, exc.message, retryable=exc.retryable)
    except Exception as exc:
        from training.engine.errors import EngineError

        if isinstance(exc, EngineError):
            _fail_push(report, f"Preparing the files failed: {exc}", retryable=False)
            return
        failure = describe_hub_error(exc, repo_id=repo_id, writing=True)
        if failure.internal:
            logger.exception("push %s: failed", push_id)
        else:  # what the Hub (or hf_xet) raised, for operators: the user sees the message
            logger.warning("push %s: %s: %s", push_id, type(exc).__name__, str(exc)[:500])
        _fail_push(report, failure.message, retryable=failure.retryable)


def _fail_push(report: _PushReporter, message: str, *, retryable: bool) -> None:
    logger.warning("push %s: failed: %s", report.push.pk, message)
    current = HubPush.objects.filter(pk=report.push.pk).values_list("stage", flat=True).first() or ""
    report.finish(TaskStatus.FAILED, error=message, retryable=retryable, stage=f"failed while {current}"[:200])
