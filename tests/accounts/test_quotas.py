"""Per-user quotas: concurrent jobs, GPU minutes per month (local and Modal apart) and Modal spend, enforced when a job
is created and when it starts (also under parallel requests), explained with usage and reset time, overridable."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import quotas
from accounts.models import User
from tests.factories import TINY_HYPER, TrainingJobFactory, dataset_for
from training import quotas as job_quotas
from training import services, tasks
from training.models import TrainingJob


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path


def _body(ds, **kw):
    from models_app.models import BaseModel

    return {
        "name": "q",
        "base_model": BaseModel.objects.ensure_embedded().pk,
        "dataset": ds.pk,
        "method": "sft",
        "weights": "lora",
        "hyperparameters": dict(TINY_HYPER),
        **kw,
    }


def _set_quota(user, **overrides):
    # What an operator does in the admin: the row's overrides change; requests read them fresh.
    User.objects.filter(pk=user.pk).update(quota_overrides={**user.quota_overrides, **overrides})
    user.refresh_from_db()


def _run_together(n, fn):
    """Call fn(i) from n threads released at once (each thread has its own database connection)."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


# --- usage -------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_usage_counts_this_month_per_backend_with_running_jobs(user, other_user, media, auth_client):
    now = timezone.now()
    last_month = quotas.month_start(now) - timedelta(hours=1)
    TrainingJobFactory(owner=user, status="succeeded", compute_seconds=600)  # 10 local minutes
    TrainingJobFactory(owner=user, status="failed", compute_seconds=60)  # 1 local minute (failures count too)
    TrainingJobFactory(owner=user, status="succeeded", compute_seconds=6000, finished=last_month)  # another month
    TrainingJobFactory(owner=user, status="succeeded", backend="modal", compute_seconds=1800, cost_usd=0.55)
    TrainingJobFactory(
        owner=user,
        status="running",
        backend="modal",
        modal_gpu="A100-80GB",
        running_since=now - timedelta(minutes=6),
        compute_seconds=120,
        cost_usd=0.08,
    )
    TrainingJobFactory(owner=other_user, status="succeeded", compute_seconds=99999, backend="modal", cost_usd=99)

    body = auth_client.get("/api/auth/me/quotas/").json()
    used = body["usage"]
    assert used["gpu_minutes_local_this_month"] == pytest.approx(11.0)
    # 30 finished + 2 from the running job's earlier attempt + ~6 of its current attempt
    assert used["gpu_minutes_modal_this_month"] == pytest.approx(38.0, abs=0.1)
    assert used["modal_spend_usd_this_month"] == pytest.approx(0.55 + 0.08 + 360 / 3600 * 2.50, abs=0.01)
    assert used["concurrent_jobs"] == 1
    assert body["quotas"]["gpu_minutes_local_per_month"] == 6000
    assert body["remaining"]["gpu_minutes_local_per_month"] == pytest.approx(6000 - 11.0)
    assert body["resets_at"].startswith(quotas.next_reset(now).date().isoformat())
    # The profile endpoint carries the same usage.
    assert auth_client.get("/api/auth/me/").json()["usage"]["gpu_minutes_local_this_month"] == pytest.approx(11.0)


# --- create ------------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_parallel_creates_never_exceed_the_concurrent_jobs_limit(user, media):
    _set_quota(user, concurrent_jobs=2)
    ds = dataset_for(user)

    def create(_i):
        client = APIClient()
        client.force_authenticate(user)
        r = client.post("/api/training/jobs/", _body(ds), format="json")
        return r.status_code, r.json()["detail"] if r.status_code != 201 else ""

    results = _run_together(6, create)
    codes = sorted(code for code, _ in results)
    assert codes == [201, 201, 429, 429, 429, 429], results
    message = next(detail for code, detail in results if code == 429)
    assert "Concurrent jobs quota reached" in message and "you already have 2 active" in message
    assert "your limit is 2" in message
    assert TrainingJob.objects.filter(owner=user, status__in=TrainingJob.ACTIVE).count() == 2


@pytest.mark.django_db
def test_operator_override_takes_effect_at_once(user, media, auth_client):
    ds = dataset_for(user)
    assert user.quotas()["concurrent_jobs"] == 2  # the default
    for _ in range(2):
        assert auth_client.post("/api/training/jobs/", _body(ds), format="json").status_code == 201
    assert auth_client.post("/api/training/jobs/", _body(ds), format="json").status_code == 429
    _set_quota(user, concurrent_jobs=3)
    assert auth_client.post("/api/training/jobs/", _body(ds), format="json").status_code == 201
    _set_quota(user, concurrent_jobs=10, gpu_minutes_local_per_month=0)
    r = auth_client.post("/api/training/jobs/", _body(ds), format="json")
    assert r.status_code == 429 and "Local GPU minutes quota reached: 0.0 of 0 minutes" in r.json()["detail"]
    assert auth_client.get("/api/auth/me/quotas/").json()["quotas"]["gpu_minutes_local_per_month"] == 0


@pytest.mark.django_db
def test_used_up_local_minutes_refuse_local_jobs_only(user, media, auth_client):
    TrainingJobFactory(owner=user, status="succeeded", compute_seconds=3600)
    _set_quota(user, gpu_minutes_local_per_month=60)
    ds = dataset_for(user)
    r = auth_client.post("/api/training/jobs/", _body(ds), format="json")
    assert r.status_code == 429, r.content
    detail = r.json()["detail"]
    reset = quotas.next_reset().strftime("%Y-%m-%d %H:%M UTC")
    assert detail.startswith("Local GPU minutes quota reached: 60.0 of 60 minutes used this month")
    assert f"resets on {reset}" in detail
    # Modal minutes are counted apart: a Modal job is still allowed.
    r = auth_client.post("/api/training/jobs/", _body(ds, backend="modal", modal_gpu="A10G"), format="json")
    assert r.status_code == 201, r.content


@pytest.mark.django_db
def test_a_running_jobs_elapsed_time_counts(user, media, auth_client):
    TrainingJobFactory(owner=user, status="running", running_since=timezone.now() - timedelta(minutes=30))
    _set_quota(user, gpu_minutes_local_per_month=20)
    r = auth_client.post("/api/training/jobs/", _body(dataset_for(user)), format="json")
    assert r.status_code == 429 and "30.0 of 20 minutes" in r.json()["detail"]


@pytest.mark.django_db
def test_modal_spend_limit_refuses_modal_jobs(user, media, auth_client):
    TrainingJobFactory(owner=user, status="succeeded", backend="modal", compute_seconds=600, cost_usd=50.0)
    r = auth_client.post(
        "/api/training/jobs/", _body(dataset_for(user), backend="modal", modal_gpu="T4"), format="json"
    )
    assert r.status_code == 429
    assert "Modal spend quota reached: $50.00 of $50.00 spent this month" in r.json()["detail"]
    assert "resets on" in r.json()["detail"]
    _set_quota(user, modal_spend_usd_per_month=100)
    r = auth_client.post(
        "/api/training/jobs/", _body(dataset_for(user), backend="modal", modal_gpu="T4"), format="json"
    )
    assert r.status_code == 201


# --- start -------------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("backend", ["local", "modal"])
def test_parallel_starts_never_exceed_the_monthly_budget(user, media, backend):
    jobs = [TrainingJobFactory(owner=user, backend=backend, name=f"j{i}") for i in range(5)]
    est_s, est_usd = job_quotas.estimated_cost(
        TrainingJob.objects.select_related("dataset", "base_model").get(pk=jobs[0].pk)
    )
    assert est_s > 0
    if backend == "local":
        _set_quota(user, gpu_minutes_local_per_month=2.5 * est_s / 60)  # room for two jobs' estimates
    else:
        assert est_usd > 0
        _set_quota(user, modal_spend_usd_per_month=2.5 * est_usd, gpu_minutes_modal_per_month=10_000)

    claimed = _run_together(5, lambda i: services.claim_job(jobs[i].pk, f"worker-{i}"))
    assert sorted(claimed) == [False, False, False, True, True], claimed
    refused = TrainingJob.objects.filter(owner=user, status="failed")
    assert refused.count() == 3 and {j.error_kind for j in refused} == {"quota"}
    needle = "Local GPU minutes quota reached" if backend == "local" else "Modal spend quota reached"
    assert all(needle in j.error and "resets on" in j.error for j in refused)
    started = TrainingJob.objects.filter(owner=user, status="starting")
    reserved = sum(j.attempt_history[-1]["reserved_s"] for j in started)
    assert reserved == pytest.approx(2 * est_s, rel=0.01)
    limits = User.objects.get(pk=user.pk).quotas()
    if backend == "local":
        assert reserved / 60 <= limits["gpu_minutes_local_per_month"]


@pytest.mark.django_db
def test_the_task_fails_a_job_over_budget_at_start_instead_of_running_it(user, media, monkeypatch):
    job = TrainingJobFactory(owner=user)  # created while there was budget
    TrainingJobFactory(owner=user, status="succeeded", compute_seconds=7200)
    _set_quota(user, gpu_minutes_local_per_month=100)  # then a 120-minute run used it up
    ran = []
    monkeypatch.setattr("training.runners.local.run", lambda job, worker_id: ran.append(job.pk))
    tasks.run_training_job.run(job.pk)
    job.refresh_from_db()
    assert ran == [] and job.status == "failed" and job.error_kind == "quota"
    assert job.error.startswith("Local GPU minutes quota reached: 120.0 of 100 minutes used this month")
    assert job.attempts == 0
    tasks.run_training_job.run(job.pk)  # a second delivery changes nothing
    job.refresh_from_db()
    assert ran == [] and job.status == "failed"


@pytest.mark.django_db
def test_resume_is_checked_like_a_create(user, media, auth_client):
    failed = TrainingJobFactory(owner=user, status="failed", compute_seconds=60)
    for i in range(2):
        TrainingJobFactory(owner=user, status="running", running_since=timezone.now(), name=f"r{i}")
    r = auth_client.post(f"/api/training/jobs/{failed.pk}/resume/")
    assert r.status_code == 429 and "Concurrent jobs quota reached" in r.json()["detail"]


# --- mid-run: a running job stops when its backend's monthly budget runs out ------------------------------------
@pytest.mark.django_db
def test_running_job_is_asked_to_stop_when_the_budget_runs_out(user, media):
    job = TrainingJobFactory(
        owner=user, status="running", lease_owner="w1", running_since=timezone.now() - timedelta(minutes=9)
    )
    _set_quota(user, gpu_minutes_local_per_month=10)
    assert services.enforce_running_quota(job.pk) is False  # 9 of 10 minutes: it goes on
    TrainingJobFactory(
        owner=user, status="succeeded", compute_seconds=90
    )  # another run finished meanwhile: 10.5 of 10
    assert services.enforce_running_quota(job.pk) is True
    job.refresh_from_db()
    assert job.cancel_requested and job.error_kind == "quota" and job.status == "running"
    assert job.error.startswith("Stopped by quota: Local GPU minutes quota reached: 10.5 of 10 minutes used")
    assert "resume the job once the quota allows it" in job.error
    assert services.enforce_running_quota(job.pk) is False  # asked once
    assert services.should_stop(job.pk, "w1")
    lines = list(job.log_lines.values_list("line", flat=True))
    assert len([line for line in lines if line.startswith("Stopped by quota")]) == 1

    # the engine then reports a cancelled run: the job ends cancelled and keeps the reason
    services.complete_job(job.pk, "w1", {"status": "cancelled", "final_step": 3, "total_steps": 6})
    job.refresh_from_db()
    assert job.status == "cancelled" and job.error_kind == "quota" and job.error.startswith("Stopped by quota")


@pytest.mark.django_db
def test_modal_spend_running_out_mid_run_stops_a_modal_job(user, media):
    job = TrainingJobFactory(
        owner=user,
        status="running",
        backend="modal",
        modal_gpu="A10G",
        lease_owner="modal",
        running_since=timezone.now() - timedelta(minutes=30),
    )
    _set_quota(user, modal_spend_usd_per_month=0.2)  # 30 min of an A10G costs more than that
    assert services.enforce_running_quota(job.pk) is True
    job.refresh_from_db()
    assert job.cancel_requested and "Modal spend quota reached" in job.error


@pytest.mark.django_db(transaction=True)
def test_a_real_run_stops_within_steps_when_an_operator_lowers_the_quota(user, media, settings):
    """The local runner's heartbeat enforces the quota: real training on the embedded model is cancelled a few steps
    after the operator lowers the quota under what was already used, keeps its checkpoint, and says why."""
    from training.models import MetricPoint
    from training.runners import local

    settings.TRAINING_HEARTBEAT_SECONDS = 1
    hyper = {**TINY_HYPER, "max_steps": 40, "save_steps": 1, "eval_steps": 100}
    job = TrainingJobFactory(owner=user)
    TrainingJob.objects.filter(pk=job.pk).update(hyperparameters=services.validate_hyperparameters(hyper))
    TrainingJobFactory(owner=user, status="succeeded", compute_seconds=600)  # 10 minutes used earlier this month
    assert services.claim_job(job.pk, "w-quota")
    lowered = threading.Event()

    def operator():
        # after two logged steps, the operator lowers the local budget under what is already used
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and MetricPoint.objects.filter(job_id=job.pk).count() < 2:
            time.sleep(0.2)
        _set_quota(user, gpu_minutes_local_per_month=5)
        lowered.set()
        connection.close()

    helper = threading.Thread(target=operator)
    helper.start()
    try:
        local.run(TrainingJob.objects.get(pk=job.pk), "w-quota")
    finally:
        helper.join(10)
        connection.close()
    job.refresh_from_db()
    assert lowered.is_set()
    assert job.status == "cancelled" and job.error_kind == "quota", (job.status, job.error)
    assert "Local GPU minutes quota reached" in job.error
    steps = job.result.get("final_step")
    assert 2 <= steps < 40, steps  # stopped early, within a few steps of the heartbeat that saw the quota
    # The checkpoint it resumes from is in the artifact store (the result names no folder of the worker's host).
    assert job.last_checkpoint_step >= 2 and job.checkpoint_key and "checkpoint" not in job.result
