"""Job notifications: an email and a signed webhook when a job succeeds or fails, delivered by a real Celery worker
(file email backend, so the test reads what it sent) to a local HTTP receiver; a failing or unreachable webhook is
retried, logged, and never changes the job. Plus the locmem email path in-process and the profile settings."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import User
from tests.factories import TrainingJobFactory
from tests.processes import free_port, server_env, start_celery_worker, stop
from training import notifications, services
from training import tasks as training_tasks
from training.models import LogLine, TrainingJob

SITE = "http://finetune.test:8000"
SECRET = "whsec-test-4f1e"
RESULT = {
    "status": "succeeded",
    "final_step": 6,
    "total_steps": 6,
    "metrics": {"train_loss_first": 2.31, "train_loss_last": 0.87, "eval_loss_after": 1.12, "early_stopped": False},
}


class Receiver:
    """A local webhook endpoint: records every request (headers and raw body) and answers `status`."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/finetune"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_job(self, job_id: int) -> list[dict]:
        return [r for r in self.requests if json.loads(r["body"])["job"]["id"] == job_id]


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def notify_queue():
    return f"notify-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def mail_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mail")


@pytest.fixture(scope="module")
def notify_worker(test_db_name, tmp_path_factory, notify_queue, mail_dir):
    """A real worker on a queue of its own (so no other test worker takes the messages), file email backend."""
    env = server_env(
        test_db_name,
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(mail_dir),
        SITE_URL=SITE,
        NOTIFY_WEBHOOK_RETRY_DELAY_S="0",
        NOTIFY_WEBHOOK_TIMEOUT_S="2",
        NOTIFY_WEBHOOK_RETRIES="2",
    )
    proc, node = start_celery_worker(env, tmp_path_factory.mktemp("nw") / "worker.log", queues=notify_queue)
    yield node
    stop(proc)


@pytest.fixture
def on_queue(settings, notify_queue, notify_worker, tmp_path):
    settings.NOTIFICATIONS_QUEUE = notify_queue
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path


def _emails_to(mail_dir: Path, address: str) -> list[email.message.Message]:
    out = []
    for path in sorted(mail_dir.glob("*.log")):
        for chunk in path.read_text().split("-" * 79):
            if chunk.strip():
                msg = email.message_from_string(chunk.strip())
                if msg["To"] == address:
                    out.append(msg)
    return out


def _wait(predicate, timeout=45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _configure(user, api_client, **fields):
    api_client.force_authenticate(user)
    r = api_client.patch("/api/auth/me/", fields, format="json")
    assert r.status_code == 200, r.content
    return r.json()


def _running(user, tmp_path, **kw) -> TrainingJob:
    return TrainingJobFactory(
        owner=user, status="running", lease_owner="w1", name="notify me", running_since=timezone.now(), **kw
    )


def _verify(secret: str, request: dict) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["headers"].get("X-Finetune-Signature", ""))


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_success_sends_an_email_and_a_signed_webhook(user, api_client, on_queue, receiver, mail_dir):
    me = _configure(user, api_client, webhook_url=receiver.url, webhook_secret=SECRET)
    assert me["webhook_url"] == receiver.url and me["has_webhook_secret"] and me["notify_email"]
    assert "webhook_secret" not in me and SECRET not in json.dumps(me)
    job = _running(user, on_queue)

    model = services.complete_job(job.pk, "w1", dict(RESULT))
    assert model is not None

    msg = _wait(lambda: _emails_to(mail_dir, user.email))[0]
    assert msg["Subject"] == "[finetune] Job 'notify me' succeeded"
    text = msg.get_payload()
    assert f"{SITE}/training/jobs/{job.pk}" in text
    assert "train_loss_last: 0.87" in text and "eval_loss_after: 1.12" in text
    assert f"Model: notify me v{model.version}" in text

    hook = _wait(lambda: receiver.for_job(job.pk))[0]
    assert hook["path"] == "/hooks/finetune"
    assert hook["headers"]["X-Finetune-Event"] == "job.succeeded"
    assert _verify(SECRET, hook) and not _verify("another-secret", hook)
    body = json.loads(hook["body"])
    assert body["event"] == "job.succeeded" and body["url"] == f"{SITE}/training/jobs/{job.pk}"
    assert body["metrics"] == RESULT["metrics"]
    assert body["model"] == {"id": model.pk, "name": "notify me", "version": model.version}
    assert body["job"]["status"] == "succeeded" and body["job"]["final_step"] == 6
    time.sleep(1.0)
    assert len(receiver.for_job(job.pk)) == 1 and len(_emails_to(mail_dir, user.email)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_failure_sends_the_error_by_email_and_webhook(user, api_client, on_queue, receiver, mail_dir):
    _configure(user, api_client, webhook_url=receiver.url, webhook_secret="")  # unsigned
    job = _running(user, on_queue)

    services.fail_job(job.pk, "Out of memory: try a smaller batch.", kind="oom")

    msg = _wait(lambda: _emails_to(mail_dir, user.email))[0]
    assert msg["Subject"] == "[finetune] Job 'notify me' failed"
    assert "Error: Out of memory: try a smaller batch." in msg.get_payload()
    hook = _wait(lambda: receiver.for_job(job.pk))[0]
    body = json.loads(hook["body"])
    assert body["event"] == "job.failed" and body["job"]["error"] == "Out of memory: try a smaller batch."
    assert body["job"]["error_kind"] == "oom" and body["model"] is None
    assert "X-Finetune-Signature" not in hook["headers"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
@pytest.mark.parametrize("how", ["http-500", "unreachable"])
def test_a_failing_webhook_is_retried_logged_and_never_fails_the_job(
    user, api_client, on_queue, receiver, mail_dir, how
):
    url = receiver.url if how == "http-500" else f"http://127.0.0.1:{free_port()}/nobody-listens"
    _configure(user, api_client, webhook_url=url, webhook_secret=SECRET)
    receiver.status = 500
    try:
        job = _running(user, on_queue)
        services.complete_job(job.pk, "w1", dict(RESULT))
        line = _wait(lambda: LogLine.objects.filter(job=job, line__contains="webhook").first())
    finally:
        receiver.status = 200
    reason = "HTTP 500" if how == "http-500" else "ConnectionError"
    assert "failed after 3 attempt(s)" in line.line and reason in line.line and line.level == "warning"
    if how == "http-500":
        assert len(receiver.for_job(job.pk)) == 3  # the first try and two retries
    job.refresh_from_db()
    assert job.status == "succeeded" and job.error == ""
    assert _wait(lambda: _emails_to(mail_dir, user.email))  # the email went out regardless


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_email_can_be_turned_off(user, api_client, on_queue, receiver, mail_dir):
    _configure(user, api_client, notify_email=False, webhook_url=receiver.url)
    job = _running(user, on_queue)
    services.fail_job(job.pk, "boom", kind="engine")
    _wait(lambda: receiver.for_job(job.pk))
    time.sleep(1.0)
    assert _emails_to(mail_dir, user.email) == []


# --- in-process (locmem backend) ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_outcome_email_is_sent_once_per_outcome(user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SITE_URL = SITE
    job = TrainingJobFactory(owner=user, status="succeeded", result=dict(RESULT), name="locmem")
    training_tasks.send_job_email.run(job.pk)
    training_tasks.send_job_email.run(job.pk)  # a redelivered message sends nothing more
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [user.email] and "succeeded" in mail.outbox[0].subject
    assert f"{SITE}/training/jobs/{job.pk}" in mail.outbox[0].body
    queued = TrainingJobFactory(owner=user, status="running")
    assert notifications.send_job_email(queued.pk) is False  # only finished jobs are announced


def test_signature_helpers_match_an_independent_hmac():
    body = b'{"event": "job.succeeded"}'
    sig = notifications.sign("k", body)
    assert sig == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert notifications.verify("k", body, sig) and not notifications.verify("k", body + b" ", sig)


# --- profile settings --------------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://example.com/hook", "must start with http:// or https:// (got ftp://)"),
        ("javascript:alert(1)", "must start with http:// or https://"),
        ("example.com/hook", "must start with http:// or https://"),
        ("http://", "not a valid URL"),
    ],
)
def test_webhook_url_must_be_http_or_https(auth_client, user, url, needle):
    r = auth_client.patch("/api/auth/me/", {"webhook_url": url}, format="json")
    assert r.status_code == 400 and needle in r.json()["detail"] and "webhook_url" in r.json()["errors"]
    assert User.objects.get(pk=user.pk).webhook_url == ""


@pytest.mark.django_db
def test_webhook_secret_is_stored_encrypted_and_can_be_cleared(auth_client, user):
    from accounts import crypto

    r = auth_client.patch(
        "/api/auth/me/", {"webhook_url": "https://hooks.example.com/x", "webhook_secret": SECRET}, format="json"
    )
    assert r.status_code == 200 and r.json()["has_webhook_secret"]
    row = User.objects.get(pk=user.pk)
    assert SECRET not in row.webhook_secret_encrypted and crypto.decrypt(row.webhook_secret_encrypted) == SECRET
    r = auth_client.patch("/api/auth/me/", {"webhook_url": "", "webhook_secret": ""}, format="json")
    assert r.status_code == 200 and not r.json()["has_webhook_secret"] and r.json()["webhook_url"] == ""


# --- webhook targets: no calls into the deployment's own network ------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:8000/hook", "127.0.0.1"),
        ("http://localhost/hook", "127.0.0.1"),
        ("http://10.1.2.3/hook", "10.1.2.3"),
        ("http://192.168.0.10:9000/hook", "192.168.0.10"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::1]:8080/hook", "::1"),
        ("https://[fd00::5]/hook", "fd00::5"),
    ],
)
def test_webhook_to_an_internal_address_is_refused(auth_client, user, settings, url, address):
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    r = auth_client.patch("/api/auth/me/", {"webhook_url": url}, format="json")
    assert r.status_code == 400, r.content
    detail = r.json()["detail"]
    assert f"resolves to {address}" in detail and "public addresses" in detail and "webhook_url" in r.json()["errors"]
    assert User.objects.get(pk=user.pk).webhook_url == ""


@pytest.mark.django_db
def test_webhook_to_a_public_address_is_accepted_and_internal_ones_when_allowed(auth_client, user, settings):
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    r = auth_client.patch("/api/auth/me/", {"webhook_url": "https://93.184.215.14/hooks/x"}, format="json")
    assert r.status_code == 200 and r.json()["webhook_url"] == "https://93.184.215.14/hooks/x"
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True  # an operator's choice for internal receivers
    r = auth_client.patch("/api/auth/me/", {"webhook_url": "http://10.0.0.7/hook"}, format="json")
    assert r.status_code == 200 and r.json()["webhook_url"] == "http://10.0.0.7/hook"


@pytest.mark.django_db
def test_delivery_checks_the_target_again_and_never_calls_an_internal_one(user, settings, receiver, tmp_path):
    """A URL saved while internal receivers were allowed (or a host whose DNS changed) is not called once they are
    not: nothing reaches the receiver, the job's log says why, the job is untouched."""
    User.objects.filter(pk=user.pk).update(webhook_url=receiver.url)
    job = TrainingJobFactory(owner=user, status="succeeded", result=dict(RESULT), name="internal hook")
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    before = len(receiver.requests)
    assert notifications.deliver_webhook(job.pk) is False
    assert len(receiver.requests) == before
    lines = list(LogLine.objects.filter(job=job).values_list("line", flat=True))
    assert any("not sent" in line and "127.0.0.1" in line and "public addresses" in line for line in lines), lines
    assert TrainingJob.objects.get(pk=job.pk).status == "succeeded"


@pytest.mark.django_db
def test_send_a_test_webhook_from_the_settings(auth_client, user, receiver, settings):
    """The Settings page's test button: a signed `test` event reaches the receiver and the answer says so; a
    receiver answering 500, one nobody listens on, and a second click within seconds are reported plainly."""
    from django.core.cache import cache

    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True
    assert auth_client.post("/api/training/notifications/test-webhook/").status_code == 409  # no URL saved yet
    _configure(user, auth_client, webhook_url=receiver.url, webhook_secret="s3cret-for-tests")
    before = len(receiver.requests)
    r = auth_client.post("/api/training/notifications/test-webhook/")
    assert r.status_code == 200, r.content
    assert r.json() == {
        "delivered": True,
        "status_code": 200,
        "detail": f"Delivered (signed): {receiver.url.split('/')[2]} answered HTTP 200.",
    }
    sent = receiver.requests[before]
    assert json.loads(sent["body"])["event"] == "test" and _verify("s3cret-for-tests", sent)
    again = auth_client.post("/api/training/notifications/test-webhook/")
    assert again.status_code == 429 and "wait 10 seconds" in again.json()["detail"]
    cache.delete(f"webhook-test:{user.pk}")
    receiver.status = 500
    try:
        failed = auth_client.post("/api/training/notifications/test-webhook/").json()
    finally:
        receiver.status = 200
    assert failed["delivered"] is False and failed["status_code"] == 500 and "HTTP 500" in failed["detail"]
    cache.delete(f"webhook-test:{user.pk}")
    _configure(user, auth_client, webhook_url=f"http://127.0.0.1:{free_port()}/nobody")
    gone = auth_client.post("/api/training/notifications/test-webhook/").json()
    assert gone["delivered"] is False and gone["status_code"] is None and "Could not reach" in gone["detail"]
