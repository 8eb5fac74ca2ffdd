"""Job notifications: an email and an optional signed webhook when a job succeeds or fails.

Queued by training.services when it commits a final state; sent by training.tasks (Celery, on
settings.NOTIFICATIONS_QUEUE). A webhook that
fails is retried a couple of times by the task and then only logged (and noted in the job's log): it never changes
the job. Both deliveries are idempotent per job outcome (a cache marker keyed by the job's finish time).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.utils import timezone

from accounts import crypto
from accounts.services import webhook_target_refusal

from . import services
from .models import TrainingJob

logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Finetune-Signature"
MARKER_TTL_S = 14 * 24 * 3600


class WebhookFailed(Exception):
    """The receiver did not accept the delivery (network error, timeout or a non-2xx answer)."""


def job_url(job_id: int) -> str:
    """The job's page in the web app."""
    return f"{settings.SITE_URL.rstrip('/')}/training/jobs/{job_id}"


def sign(secret: str, body: bytes) -> str:
    """The X-Finetune-Signature value: ``sha256=`` + hex HMAC-SHA256 of the raw body with the user's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature or "")


def _load(job_id: int) -> TrainingJob | None:
    job = (
        TrainingJob.objects.select_related("owner", "base_model", "dataset", "produced_model")
        .filter(pk=job_id)
        .first()
    )
    if job is None or job.status not in (TrainingJob.Status.SUCCEEDED, TrainingJob.Status.FAILED):
        return None
    return job


def payload(job: TrainingJob) -> dict[str, Any]:
    """The webhook body: the event, the job, its final metrics, the produced model and a link."""
    result = job.result or {}
    model = getattr(job, "produced_model", None) if job.status == TrainingJob.Status.SUCCEEDED else None
    return {
        "event": f"job.{job.status}",
        "job": {
            "id": job.pk,
            "name": job.name,
            "status": job.status,
            "method": job.method,
            "weights": job.weights,
            "backend": job.backend,
            "base_model": job.base_model.name,
            "dataset": job.dataset.name,
            "created": job.created.isoformat(),
            "started": job.started.isoformat() if job.started else None,
            "finished": job.finished.isoformat() if job.finished else None,
            "error": job.error,
            "error_kind": job.error_kind,
            "final_step": result.get("final_step", job.current_step),
            "total_steps": result.get("total_steps", job.total_steps),
            "compute_seconds": job.compute_seconds,
            "cost_usd": job.cost_usd,
        },
        "metrics": result.get("metrics") or {},
        "model": {"id": model.pk, "name": model.name, "version": model.version} if model is not None else None,
        "url": job_url(job.pk),
        "sent_at": timezone.now().isoformat(),
    }


def _marker(kind: str, job: TrainingJob) -> str:
    finished = job.finished.timestamp() if job.finished else 0
    return f"notify:{kind}:{job.pk}:{finished}"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def email_text(job: TrainingJob) -> tuple[str, str]:
    """(subject, body) of the notification email."""
    data = payload(job)
    verb = "succeeded" if job.status == TrainingJob.Status.SUCCEEDED else "failed"
    subject = f"[finetune] Job '{job.name}' {verb}"
    lines = [f"Your training job '{job.name}' (#{job.pk}) {verb}.", ""]
    if job.status == TrainingJob.Status.FAILED:
        lines += [f"Error: {job.error or 'unknown'}", ""]
    lines += [
        f"Base model: {job.base_model.name}",
        f"Dataset: {job.dataset.name}",
        f"Method: {job.method} ({job.weights}), backend {job.backend}",
        f"Steps: {data['job']['final_step']} of {data['job']['total_steps']}",
        f"Compute: {job.compute_seconds / 60:.1f} min" + (f", ${job.cost_usd:.2f}" if job.cost_usd else ""),
    ]
    if data["model"]:
        lines.append(f"Model: {data['model']['name']} v{data['model']['version']}")
    metrics = {k: v for k, v in data["metrics"].items() if v is not None and not isinstance(v, (dict, list))}
    if metrics:
        lines += ["", "Final metrics:"] + [f"  {k}: {_fmt(v)}" for k, v in sorted(metrics.items())]
    lines += [
        "",
        f"Open the job: {data['url']}",
        "",
        "You get this email because notifications are on in your profile; turn them off there.",
    ]
    return subject, "\n".join(lines)


def send_job_email(job_id: int) -> bool:
    """Email the job's owner about the outcome (once per outcome); False when nothing was sent."""
    job = _load(job_id)
    if job is None or not job.owner.notify_email or not job.owner.email:
        return False
    key = _marker("email", job)
    if not cache.add(key, "sending", MARKER_TTL_S):
        logger.info("job %s: outcome email already sent", job_id)
        return False
    subject, body = email_text(job)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [job.owner.email])
    except Exception:
        cache.delete(key)  # let a redelivery try again
        raise
    logger.info("job %s: outcome email sent to user %s", job_id, job.owner_id)
    return True


def deliver_webhook(job_id: int) -> bool:
    """POST the signed payload to the owner's webhook (once per outcome). Raises WebhookFailed to be retried;
    False when there is nothing to send."""
    job = _load(job_id)
    if job is None or not job.owner.webhook_url:
        return False
    key = _marker("webhook", job)
    if cache.get(key):
        logger.info("job %s: webhook already delivered", job_id)
        return False
    refusal = webhook_target_refusal(job.owner.webhook_url)  # again now: DNS may have changed since it was saved
    if refusal:
        record_webhook_failure(job_id, f"not sent: {refusal}", 0)
        return False
    body = json.dumps(payload(job), default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "finetune-webhook/1",
        "X-Finetune-Event": f"job.{job.status}",
        "X-Finetune-Delivery": uuid.uuid4().hex,
    }
    if job.owner.webhook_secret_encrypted:
        headers[SIGNATURE_HEADER] = sign(crypto.decrypt(job.owner.webhook_secret_encrypted), body)
    try:
        response = requests.post(
            job.owner.webhook_url,
            data=body,
            headers=headers,
            timeout=settings.NOTIFY_WEBHOOK_TIMEOUT_S,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise WebhookFailed(f"{type(exc).__name__}: {exc}") from None
    if not 200 <= response.status_code < 300:
        raise WebhookFailed(f"HTTP {response.status_code}")
    cache.set(key, "delivered", MARKER_TTL_S)
    logger.info(
        "job %s: webhook delivered to %s (HTTP %s)",
        job_id,
        urlsplit(job.owner.webhook_url).netloc,
        response.status_code,
    )
    return True


def record_webhook_failure(job_id: int, reason: str, attempts: int) -> None:
    """The last retry failed: log it and note it in the job's log (the job itself is untouched)."""
    job = TrainingJob.objects.select_related("owner").filter(pk=job_id).first()
    host = urlsplit(job.owner.webhook_url).netloc if job else "?"
    what = f"failed after {attempts} attempt(s)" if attempts else "refused"
    logger.warning("job %s: webhook to %s %s: %s", job_id, host, what, reason)
    if job is not None:
        services.record_event(
            job_id, {"type": "log", "level": "warning", "line": f"webhook to {host} {what}: {reason}"}
        )


TEST_INTERVAL_S = 10  # one test delivery per user this often (it runs in the web request)


def send_test_webhook(user: Any) -> dict[str, Any]:
    """POST a signed `test` event to the user's webhook now and say what happened (Settings' "Send a test").
    Refused targets and unreachable receivers are reported, not raised: the answer is the test's result."""
    from finetune.exceptions import ServiceError

    if not user.webhook_url:
        raise ServiceError("Set a webhook URL and save it first.", field="webhook_url", status_code=409)
    if not cache.add(f"webhook-test:{user.pk}", 1, TEST_INTERVAL_S):
        raise ServiceError(f"A test was sent a moment ago; wait {TEST_INTERVAL_S} seconds.", status_code=429)
    host = urlsplit(user.webhook_url).netloc
    refusal = webhook_target_refusal(user.webhook_url)
    if refusal:
        return {"delivered": False, "status_code": None, "detail": f"Not sent: {refusal}"}
    body = json.dumps(
        {
            "event": "test",
            "message": "A test from finetune: job notifications reach this URL.",
            "user": user.username,
            "sent": timezone.now().isoformat(),
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "finetune-webhook/1",
        "X-Finetune-Event": "test",
        "X-Finetune-Delivery": uuid.uuid4().hex,
    }
    if user.webhook_secret_encrypted:
        headers[SIGNATURE_HEADER] = sign(crypto.decrypt(user.webhook_secret_encrypted), body)
    try:
        response = requests.post(
            user.webhook_url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=min(float(settings.NOTIFY_WEBHOOK_TIMEOUT_S), 10.0),
        )
    except requests.Timeout:
        return {"delivered": False, "status_code": None, "detail": f"{host} did not answer in time."}
    except requests.RequestException as exc:
        return {"delivered": False, "status_code": None, "detail": f"Could not reach {host} ({type(exc).__name__})."}
    ok = 200 <= response.status_code < 300
    signed = " (signed)" if SIGNATURE_HEADER in headers else ""
    detail = (
        f"Delivered{signed}: {host} answered HTTP {response.status_code}."
        if ok
        else f"{host} answered HTTP {response.status_code}; job notifications would be retried, then dropped."
    )
    return {"delivered": ok, "status_code": response.status_code, "detail": detail}
