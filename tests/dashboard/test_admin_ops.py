"""Operators' admin: job actions go through the training services and land in the audit log, permissions hide jobs
and the queue page from staff without them, quota overrides are validated and audited, and the worker health table
follows a real Celery worker that starts and stops."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Permission
from django.utils import timezone

from accounts.models import AuditLog, User
from tests.factories import TINY_HYPER, TrainingJobFactory, make_ready_dataset
from training import services
from training.models import TrainingJob

JOBS = "/admin/training/trainingjob/"
QUEUE = "/admin/training/trainingjob/queue/"


@pytest.fixture
def ops(db):
    return User.objects.create_superuser(username="ops", email="ops@example.com", password="x-Strong-pass-1")


@pytest.fixture
def make_job(user, tmp_path, settings):
    """A job of ``user`` in a given state; with ``worker``, holding that worker's lease halfway through its steps."""
    settings.MEDIA_ROOT = tmp_path / "media"

    def make(status="queued", *, worker="", name="opsjob", **extra):
        now = timezone.now()
        if worker:
            extra.update(
                lease_owner=worker,
                lease_expires=now + timedelta(seconds=60),
                heartbeat_at=now,
                attempts=1,
                current_step=3,
                total_steps=6,
                progress=0.5,
                running_since=now - timedelta(seconds=90),
                attempt_worker=worker,
            )
        return TrainingJobFactory(owner=user, name=name, status=status, hyperparameters=dict(TINY_HYPER), **extra)

    return make


def training_queue_length() -> int:
    """Messages waiting on the `training` queue of the test broker."""
    return int(redis.Redis.from_url(settings.CELERY_BROKER_URL).llen("training"))


def act(client, action: str, *jobs: TrainingJob):
    return client.post(JOBS, {"action": action, "_selected_action": [j.pk for j in jobs]}, follow=True)


@pytest.mark.django_db
def test_admin_cancel_stops_a_running_job_through_the_service(client, ops, make_job):
    worker = "training-a@host:4242:task-1"
    running = make_job("running", worker=worker)
    queued = make_job("queued", name="waiting")
    client.force_login(ops)
    assert services.should_stop(running.pk, worker) is False

    r = act(client, "cancel_jobs", running, queued)
    assert r.status_code == 200
    assert "2 job(s) cancelled." in r.content.decode()
    running.refresh_from_db()
    queued.refresh_from_db()
    # The running job's trainer sees the request at its next step (services.should_stop), like an API cancel.
    assert running.cancel_requested is True and running.status == "running"
    assert services.should_stop(running.pk, worker) is True
    assert queued.status == "cancelled"
    entries = AuditLog.objects.filter(action="job.cancel").order_by("target_id")
    assert [(e.actor, e.target_type, e.target_id, e.details["outcome"]) for e in entries] == [
        (ops, "training.trainingjob", str(running.pk), "done"),
        (ops, "training.trainingjob", str(queued.pk), "done"),
    ]
    assert entries[0].details["before"]["lease_owner"] == worker


@pytest.mark.django_db(transaction=True)
def test_admin_retry_and_requeue_queue_the_job_again(client, ops, make_job):
    client.force_login(ops)
    failed = make_job("failed", error="boom", error_kind="internal", name="failed one")
    worker = "training-b@host:1:task-2"
    stuck = make_job("running", worker=worker, name="stuck one")
    before = training_queue_length()

    r = act(client, "retry_jobs", failed)
    assert "1 job(s) re-queued." in r.content.decode()
    failed.refresh_from_db()
    assert failed.status == "queued" and failed.error == ""
    assert training_queue_length() == before + 1  # the Celery message is on the broker

    r = act(client, "requeue_jobs", stuck)
    assert "1 job(s) requeued." in r.content.decode()
    stuck.refresh_from_db()
    assert stuck.status == "recovering" and stuck.lease_owner == "" and stuck.lease_expires is None
    assert stuck.attempt_history[-1]["outcome"] == "interrupted: requeued by an operator"
    assert stuck.compute_seconds >= 89  # the interrupted attempt is accounted
    assert services.renew_lease(stuck.pk, worker) is False  # the old worker stops at its next heartbeat
    assert training_queue_length() == before + 2

    # A finished job cannot be requeued: refused with a message, and the refusal is audited too.
    done = make_job("succeeded", name="done one")
    r = act(client, "requeue_jobs", done)
    msgs = [str(m) for m in r.context["messages"]]
    assert msgs == [f"job {done.pk}: The job already succeeded; retry it instead of requeueing it."], msgs
    done.refresh_from_db()
    assert done.status == "succeeded"

    log = list(AuditLog.objects.order_by("id").values_list("action", "target_id", "details__outcome"))
    assert log == [
        ("job.retry", str(failed.pk), "done"),
        ("job.requeue", str(stuck.pk), "done"),
        ("job.requeue", str(done.pk), "refused"),
    ]


@pytest.mark.django_db
def test_staff_without_permissions_cannot_see_jobs_or_the_queue(client, make_job):
    job = make_job("running", worker="w@h:1:t")
    staff = User.objects.create_user(
        username="viewer", email="v@example.com", password="x-Strong-pass-1", is_staff=True
    )
    client.force_login(staff)
    assert client.get(JOBS).status_code == 403
    assert client.get(f"{JOBS}{job.pk}/change/").status_code == 403
    assert client.get(QUEUE).status_code == 403
    assert client.get("/admin/accounts/auditlog/").status_code == 403
    assert client.get("/admin/accounts/user/storage/").status_code == 403
    index = client.get("/admin/").content.decode()
    assert "Training queue and worker health" not in index
    # Not signed in at all: the admin login page.
    client.logout()
    r = client.get(QUEUE)
    assert r.status_code == 302 and "/admin/login/" in r["Location"]


@pytest.mark.django_db
def test_view_permission_shows_the_queue_but_allows_no_action(client, make_job):
    job = make_job("running", worker="w@h:1:t")
    staff = User.objects.create_user(
        username="viewer", email="v@example.com", password="x-Strong-pass-1", is_staff=True
    )
    staff.user_permissions.add(Permission.objects.get(codename="view_trainingjob"))
    client.force_login(staff)
    assert client.get(JOBS).status_code == 200
    assert "Training queue and worker health" in client.get("/admin/").content.decode()
    page = client.get(QUEUE)
    assert page.status_code == 200 and f'data-job-id="{job.pk}"' in page.content.decode()
    # The cancel action needs training.change_trainingjob: without it nothing happens and nothing is audited.
    act(client, "cancel_jobs", job)
    job.refresh_from_db()
    assert job.cancel_requested is False
    assert not AuditLog.objects.exists()


@pytest.mark.django_db
def test_audit_log_is_read_only(client, ops, make_job):
    client.force_login(ops)
    job = make_job("queued")
    act(client, "cancel_jobs", job)
    entry = AuditLog.objects.get()
    assert client.get("/admin/accounts/auditlog/").status_code == 200
    assert client.get("/admin/dashboard/auditlog/").url == "/admin/accounts/auditlog/"  # the old address
    assert client.get(f"/admin/accounts/auditlog/{entry.pk}/change/").status_code == 200  # view only
    assert client.get("/admin/accounts/auditlog/add/").status_code == 403
    assert client.post(f"/admin/accounts/auditlog/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditLog.objects.count() == 1


def user_form(target: User, **overrides):
    data = {
        "username": target.username,
        "email": target.email,
        "display_name": "",
        "first_name": "",
        "last_name": "",
        "locked_until_0": "",
        "locked_until_1": "",
        "is_active": "on",
        "quota_overrides": "{}",
        "api_tokens-TOTAL_FORMS": "0",
        "api_tokens-INITIAL_FORMS": "0",
        "api_tokens-MIN_NUM_FORMS": "0",
        "api_tokens-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_quota_overrides_are_validated_audited_and_take_effect(client, ops, user):
    client.force_login(ops)
    url = f"/admin/accounts/user/{user.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and 'data-testid="quota-summary"' in page.content.decode()

    bad = client.post(
        url, user_form(user, quota_overrides='{"concurrent_jobs": -1, "gpu_hours": 3, "storage_bytes": 1.5}')
    )
    assert bad.status_code == 200  # the form again, with the problems named
    text = bad.content.decode()
    assert "&#x27;concurrent_jobs&#x27; cannot be negative." in text
    assert "Unknown quota &#x27;gpu_hours&#x27;" in text
    assert "&#x27;storage_bytes&#x27; must be a whole number." in text
    user.refresh_from_db()
    assert user.quota_overrides == {}
    assert not AuditLog.objects.exists()

    ok = client.post(url, user_form(user, quota_overrides='{"concurrent_jobs": 5, "modal_spend_usd_per_month": 12.5}'))
    assert ok.status_code == 302
    user.refresh_from_db()
    assert user.quota_overrides == {"concurrent_jobs": 5, "modal_spend_usd_per_month": 12.5}
    assert user.quotas()["concurrent_jobs"] == 5
    assert user.quotas()["storage_bytes"] == settings.DEFAULT_QUOTAS["storage_bytes"]
    entry = AuditLog.objects.get(action="user.quota_overrides")
    assert entry.actor == ops and entry.target_id == str(user.pk)
    assert entry.details["before"] == {} and entry.details["after"] == user.quota_overrides
    assert entry.details["effective"]["concurrent_jobs"] == 5


@pytest.mark.django_db
def test_user_list_shows_usage_and_storage_page_totals(client, ops, user, make_job):
    job = make_job("succeeded")
    TrainingJob.objects.filter(pk=job.pk).update(compute_seconds=600)
    client.force_login(ops)
    r = client.get("/admin/accounts/user/")
    assert r.status_code == 200
    text = r.content.decode()
    assert "Compute min (month)" in text and "10.0" in text
    r = client.get("/admin/accounts/user/storage/")
    assert r.status_code == 200
    size = job.dataset.files.first().size_bytes
    assert f'data-user="{user.username}"' in r.content.decode()
    assert r.context["usage"]["totals"]["datasets_bytes"] == size


@pytest.mark.django_db
def test_worker_health_follows_a_real_worker(client, ops, make_job, test_db_name, tmp_path):
    from tests.processes import server_env, start_celery_worker, stop

    client.force_login(ops)
    node = f"ops-{uuid.uuid4().hex[:6]}@localhost"
    proc, node = start_celery_worker(server_env(test_db_name), tmp_path / "worker.log", queues="default", name=node)
    try:
        # A job whose lease this node holds is listed under it.
        job = make_job("running", worker=f"{node}:{proc.pid}:task-9")
        page = client.get(QUEUE)
        assert page.status_code == 200
        workers = {w.name: w for w in page.context["health"].workers}
        assert node in workers
        assert workers[node].alive and workers[node].queues == ["default"] and workers[node].pid is not None
        assert [j.pk for j in page.context["snapshot"].running[node]] == [job.pk]
        assert f'data-worker="{node}"' in page.content.decode()
        assert node not in page.context["orphan_nodes"]
    finally:
        stop(proc)
    page = client.get(QUEUE)
    assert node not in {w.name for w in page.context["health"].workers}
    assert f'data-worker="{node}"' not in page.content.decode()
    assert node in page.context["orphan_nodes"]  # its job is still leased to a node that no longer answers
    assert "not answering" in page.content.decode()


@pytest.mark.django_db
def test_admin_dataset_delete_goes_through_the_service_and_is_audited(client, ops, user, tmp_path, settings):
    from datasets_app.models import Dataset

    settings.MEDIA_ROOT = tmp_path / "media"
    ds = make_ready_dataset(user, name="to delete")
    client.force_login(ops)
    r = client.post(f"/admin/datasets_app/dataset/{ds.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302
    assert not Dataset.objects.filter(pk=ds.pk).exists()
    entry = AuditLog.objects.get(action="dataset.delete")
    assert entry.actor == ops and entry.target_type == "datasets_app.dataset" and entry.target_id == str(ds.pk)
