"""The jobs API: validation, limits, ownership, presets, estimate, and the lease rules of the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import TINY_HYPER, TrainingJobFactory, alpaca_rows, make_ready_dataset
from training import services, specs
from training.models import TrainingJob

pytestmark = pytest.mark.django_db


def _body(ds, base, **kw):
    return {
        "name": "t",
        "base_model": base.pk,
        "dataset": ds.pk,
        "method": "sft",
        "weights": "lora",
        "hyperparameters": dict(TINY_HYPER),
        **kw,
    }


def test_create_job_queues_it(auth_client, ready_dataset, embedded_base, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        r = auth_client.post("/api/training/jobs/", _body(ready_dataset, embedded_base), format="json")
    assert r.status_code == 201, r.content
    job = r.json()
    assert job["status"] == "queued" and job["attempts"] == 0 and job["progress"] == 0
    assert job["hyperparameters"]["learning_rate"] == 1e-3
    assert job["hyperparameters"]["lr_scheduler_type"]  # engine defaults filled in
    assert len(callbacks) == 1  # enqueued once the transaction commits


@pytest.mark.parametrize(
    ("hyper", "field", "needle"),
    [
        ({"learning_rate": 3}, "hyperparameters.learning_rate", "learning_rate"),
        ({"lerning_rate": 1e-4}, "hyperparameters", "learning_rate"),
        ({"lr_scheduler_type": "zigzag"}, "hyperparameters.lr_scheduler_type", "lr_scheduler_type"),
        ({"max_length": 100000}, "hyperparameters.max_length", "max_length"),
    ],
)
def test_bad_hyperparameters_answer_400_naming_the_field(
    auth_client, ready_dataset, embedded_base, hyper, field, needle
):
    body = _body(ready_dataset, embedded_base, hyperparameters=hyper)
    r = auth_client.post("/api/training/jobs/", body, format="json")
    assert r.status_code == 400, r.content
    assert needle in r.json()["detail"]
    assert field in r.json()["errors"]
    assert TrainingJob.objects.count() == 0


def test_job_cannot_use_another_users_dataset(auth_client, other_user, embedded_base, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "m"
    foreign = make_ready_dataset(other_user)
    r = auth_client.post("/api/training/jobs/", _body(foreign, embedded_base), format="json")
    assert r.status_code == 400 and "dataset" in r.json()["errors"]
    assert TrainingJob.objects.count() == 0


def test_dpo_needs_preference_data(auth_client, ready_dataset, embedded_base):
    r = auth_client.post("/api/training/jobs/", _body(ready_dataset, embedded_base, method="dpo"), format="json")
    assert r.status_code == 400 and "preference" in r.json()["detail"]


def test_concurrent_job_limit(auth_client, user, ready_dataset, embedded_base):
    user.quota_overrides = {"concurrent_jobs": 1}
    user.save()
    assert (
        auth_client.post("/api/training/jobs/", _body(ready_dataset, embedded_base), format="json").status_code == 201
    )
    r = auth_client.post("/api/training/jobs/", _body(ready_dataset, embedded_base), format="json")
    assert r.status_code == 429 and "limit" in r.json()["detail"]


def test_other_user_gets_404_on_every_job_route(auth_client, other_user, embedded_base, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "m"
    ds = make_ready_dataset(other_user)
    job = TrainingJob.objects.create(
        owner=other_user,
        name="theirs",
        base_model=embedded_base,
        dataset=ds,
        method="sft",
        weights="lora",
        hyperparameters=TINY_HYPER,
    )
    for method, path in [
        ("get", ""),
        ("delete", ""),
        ("post", "cancel/"),
        ("post", "resume/"),
        ("post", "continue/"),
        ("get", "metrics/"),
        ("get", "logs/"),
    ]:
        r = getattr(auth_client, method)(f"/api/training/jobs/{job.pk}/{path}", {"extra_epochs": 1}, format="json")
        assert r.status_code == 404, (method, path, r.status_code)
    assert auth_client.get("/api/training/jobs/").json()["count"] == 0
    job.refresh_from_db()
    assert job.status == "queued" and not job.cancel_requested


def test_presets_and_estimate(auth_client, ready_dataset, embedded_base):
    presets = auth_client.get("/api/training/presets/").json()
    assert {p["id"] for p in presets} >= {"quick-lora", "quality-lora", "qlora-large", "full", "dpo", "orpo"}
    r = auth_client.post("/api/training/estimate/", _body(ready_dataset, embedded_base), format="json")
    assert r.status_code == 200, r.content
    est = r.json()
    assert est["steps"] == 6 and est["tokens"] > 0 and est["duration_s"] > 0
    assert set(est["peak_memory_gb_by_method"]) == {"full", "lora", "qlora"}
    assert est["peak_memory_gb_by_method"]["full"] > est["peak_memory_gb_by_method"]["lora"]
    assert set(est["modal_cost_usd_by_gpu"]) == {"T4", "L4", "A10G", "A100-40GB", "A100-80GB", "H100"}
    assert est["fits"] is True


def test_the_estimate_knows_which_preference_runs_hold_one_logits_chunk(embedded_base):
    """On a CPU host the packed DPO and ORPO paths (LoRA or full) hold one chunk of logits, stock TRL (QLoRA DPO, a
    model without packed support) all of them; the pre-launch estimate says the same as the run's memory model."""
    from types import SimpleNamespace

    from training import estimate
    from training.engine import memory

    assert estimate.base_model_type(embedded_base) == "llama"
    qwen = SimpleNamespace(repo_id="Qwen/Qwen2.5-0.5B", architecture="Qwen2ForCausalLM")
    assert estimate.base_model_type(qwen) == "qwen2"
    shape = memory.base_model_shape(embedded_base.repo_id)
    hyper = {"per_device_train_batch_size": 4, "max_length": 1024, "precision": "fp32"}
    dpo = estimate._memory(shape, method="dpo", hyper=hyper, device_type="cpu", model_type="llama")
    orpo = estimate._memory(shape, method="orpo", hyper=hyper, device_type="cpu", model_type="llama")
    unknown = estimate._memory(shape, method="orpo", hyper=hyper, device_type="cpu", model_type=None)
    assert dpo["lora"].activations_mb < dpo["qlora"].activations_mb - 1000  # QLoRA DPO runs on stock TRL
    assert dpo["full"].activations_mb == dpo["lora"].activations_mb  # full DPO is packed too
    assert orpo["full"].activations_mb == orpo["lora"].activations_mb == dpo["lora"].activations_mb
    assert unknown["lora"].activations_mb == dpo["qlora"].activations_mb


def test_estimate_says_when_it_will_not_fit(auth_client, ready_dataset, embedded_base, settings):
    settings.TRAINING_DEVICE_MEMORY_GB = 1
    body = _body(
        ready_dataset,
        embedded_base,
        weights="full",
        hyperparameters={**TINY_HYPER, "per_device_train_batch_size": 64, "max_length": 2048},
    )
    est = auth_client.post("/api/training/estimate/", body, format="json").json()
    assert est["fits"] is False and "Will not fit" in est["notes"][0]


def test_second_delivery_finds_a_live_lease(user, ready_dataset, embedded_base):
    job = TrainingJobFactory(owner=user, dataset=ready_dataset, hyperparameters=TINY_HYPER)
    assert services.claim_job(job.pk, "w1") is True
    assert services.claim_job(job.pk, "w2") is False  # the redelivered message backs off
    job.refresh_from_db()
    assert job.lease_owner == "w1" and job.attempts == 1 and job.status == "starting"


def test_expired_lease_is_recovered_within_the_budget(
    user, ready_dataset, embedded_base, settings, django_capture_on_commit_callbacks
):
    settings.TRAINING_MAX_ATTEMPTS = 2
    job = TrainingJobFactory(owner=user, dataset=ready_dataset, hyperparameters=TINY_HYPER)
    assert services.claim_job(job.pk, "w1")
    TrainingJob.objects.filter(pk=job.pk).update(lease_expires=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert services.recover_expired_leases() == 1
    job.refresh_from_db()
    assert job.status == "recovering" and job.lease_owner == "" and len(callbacks) >= 1
    assert services.claim_job(job.pk, "w2") and TrainingJob.objects.get(pk=job.pk).attempts == 2
    TrainingJob.objects.filter(pk=job.pk).update(lease_expires=timezone.now() - timedelta(seconds=1))
    services.recover_expired_leases()
    job.refresh_from_db()
    assert job.status == "failed" and job.error_kind == "infrastructure" and "interrupted 2 times" in job.error


def test_a_modal_run_that_stops_reporting_is_recovered(
    user, ready_dataset, embedded_base, settings, django_capture_on_commit_callbacks
):
    settings.MODAL_HEARTBEAT_TIMEOUT_S = 60
    job = TrainingJobFactory(owner=user, dataset=ready_dataset, hyperparameters=TINY_HYPER)
    assert services.claim_job(job.pk, "w1")
    fresh = timezone.now() - timedelta(seconds=10)
    history = [
        {
            **TrainingJob.objects.get(pk=job.pk).attempt_history[0],
            "started": (timezone.now() - timedelta(seconds=300)).isoformat(),
        }
    ]
    TrainingJob.objects.filter(pk=job.pk).update(
        backend="modal",
        modal_gpu="T4",
        status="running",
        lease_owner="modal:call-1",
        lease_expires=None,
        heartbeat_at=fresh,
        attempt_history=history,
    )
    assert services.recover_expired_leases() == 0  # still reporting
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
    with django_capture_on_commit_callbacks(execute=False):
        assert services.recover_expired_leases() == 1
    job.refresh_from_db()
    assert job.status == "recovering" and job.lease_owner == ""
    assert job.attempt_history[-1]["outcome"] == "interrupted: the Modal run stopped reporting"
    # The lost attempt's GPU time is still billed: ~300 s on a T4.
    assert job.compute_seconds >= 300 and job.cost_usd == pytest.approx(job.compute_seconds / 3600 * 0.59, abs=1e-3)


def test_cancel_queued_job_is_final(auth_client, user, ready_dataset, embedded_base):
    job = TrainingJobFactory(owner=user, dataset=ready_dataset, hyperparameters=TINY_HYPER)
    r = auth_client.post(f"/api/training/jobs/{job.pk}/cancel/")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert services.claim_job(job.pk, "w1") is False  # a queued message arriving later does nothing
    assert services.recover_expired_leases() == 0
    assert TrainingJob.objects.get(pk=job.pk).status == "cancelled"
    assert auth_client.post(f"/api/training/jobs/{job.pk}/cancel/").status_code == 409


def test_running_job_cancel_is_relayed(user, ready_dataset, embedded_base):
    job = TrainingJobFactory(owner=user, dataset=ready_dataset, hyperparameters=TINY_HYPER)
    services.claim_job(job.pk, "w1")
    assert services.should_stop(job.pk, "w1") is False
    services.request_cancel(job)
    assert services.should_stop(job.pk, "w1") is True
    assert services.should_stop(job.pk, "other-worker") is True


def test_metric_events_get_gapless_sequence_numbers(auth_client, user, ready_dataset, embedded_base):
    job = TrainingJobFactory(owner=user, dataset=ready_dataset, hyperparameters=TINY_HYPER)
    for step in range(1, 6):
        services.record_event(
            job.pk,
            {
                "type": "metric",
                "step": step,
                "total_steps": 5,
                "loss": 2.0 / step,
                "learning_rate": 1e-3,
                "grad_norm": 1.0,
                "memory_mb": 500.0,
                "tokens_per_s": 100.0,
                "eta_s": 5 - step,
                "epoch": step / 5,
            },
        )
    services.record_event(job.pk, {"type": "log", "level": "info", "line": "hello"})
    points = auth_client.get(f"/api/training/jobs/{job.pk}/metrics/?after_seq=2").json()
    assert [p["seq"] for p in points] == [3, 4, 5]
    assert points[0]["loss"] == pytest.approx(2.0 / 3) and points[0]["step"] == 3
    assert auth_client.get(f"/api/training/jobs/{job.pk}/logs/").json()[0]["line"] == "hello"
    detail = auth_client.get(f"/api/training/jobs/{job.pk}/").json()
    assert detail["progress"] == 1.0 and detail["current_step"] == 5


def test_evaluation_choices_are_checked_before_a_job_is_created(
    auth_client, user, other_user, ready_dataset, embedded_base, tmp_path
):
    held = make_ready_dataset(user, rows=alpaca_rows(6)[4:], name="held out")
    foreign = make_ready_dataset(other_user, rows=alpaca_rows(6)[4:], name="not yours")
    chat = make_ready_dataset(user, rows=[{"messages": [{"role": "user", "content": "hi"}]}], fmt="messages")
    no_split = {**TINY_HYPER, "validation_split": 0.0}
    cases = [
        ({"compare_prompts": 2, "hyperparameters": no_split}, "compare_prompts", "held-out prompts"),
        ({"compare_prompts": 101}, "compare_prompts", "100"),
        ({"eval_dataset": foreign.pk}, "eval_dataset", "Evaluation dataset: Dataset not found"),
        ({"eval_dataset": ready_dataset.pk}, "eval_dataset", "is the training dataset"),
        ({"eval_dataset": chat.pk}, "eval_dataset", "same format"),
        ({"eval_dataset": held.pk, "eval_dataset_version": 7}, "eval_dataset_version", "no version 7"),
    ]
    for extra, field, needle in cases:
        r = auth_client.post("/api/training/jobs/", _body(ready_dataset, embedded_base, **extra), format="json")
        assert r.status_code == 400, (extra, r.content)
        assert field in r.json()["errors"] and needle in str(r.json()), (extra, r.json())
    assert TrainingJob.objects.count() == 0
    body = _body(ready_dataset, embedded_base, compare_prompts=3, eval_dataset=held.pk, hyperparameters=no_split)
    r = auth_client.post("/api/training/jobs/", body, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["compare_prompts"] == 3 and r.json()["eval_dataset"] == held.pk
    job = TrainingJob.objects.get(pk=r.json()["id"])
    spec = specs.build(job, tmp_path / "run", base_model="x", remote=True)
    assert spec.compare_prompts == 3 and spec.data.eval_files == tuple(
        specs.remote_file_name(f) for f in held.files.all()
    )


def test_several_processes_run_locally_or_on_one_modal_host(auth_client, ready_dataset, embedded_base):
    hyper = {**TINY_HYPER, "num_processes": 2}
    body = _body(ready_dataset, embedded_base, backend="modal", modal_gpu="A10G", hyperparameters=hyper)
    r = auth_client.post("/api/training/jobs/", body, format="json")
    assert r.status_code == 201 and r.json()["hyperparameters"]["num_processes"] == 2, r.content
    # One Modal container: an A10 host has 4 GPUs, the others 8 (the engine's own limit).
    body = _body(
        ready_dataset, embedded_base, backend="modal", modal_gpu="A10G", hyperparameters={**hyper, "num_processes": 5}
    )
    r = auth_client.post("/api/training/jobs/", body, format="json")
    assert r.status_code == 400 and "hyperparameters.num_processes" in r.json()["errors"], r.content
    r = auth_client.post(
        "/api/training/jobs/", _body(ready_dataset, embedded_base, hyperparameters=hyper), format="json"
    )
    assert r.status_code == 201 and r.json()["hyperparameters"]["num_processes"] == 2, r.content


def test_sharding_the_workers_cannot_run_is_refused_at_creation(auth_client, ready_dataset, embedded_base, settings):
    """fsdp on local workers without GPUs (no TRAINING_DEVICE_MEMORY_GB), and fsdp with QLoRA anywhere, get the
    engine's message at creation instead of a failed job; the same fsdp run on Modal GPUs is accepted."""
    settings.TRAINING_DEVICE_MEMORY_GB = None
    fsdp = {**TINY_HYPER, "num_processes": 2, "sharding": "fsdp"}
    cases = [
        ({"hyperparameters": fsdp, "weights": "full"}, "needs CUDA GPUs"),
        ({"hyperparameters": fsdp, "weights": "qlora", "backend": "modal", "modal_gpu": "A10G"}, "QLoRA"),
    ]
    for extra, needle in cases:
        r = auth_client.post("/api/training/jobs/", _body(ready_dataset, embedded_base, **extra), format="json")
        assert r.status_code == 400 and "hyperparameters.sharding" in r.json()["errors"], r.content
        assert needle in str(r.json()), r.json()
    assert TrainingJob.objects.count() == 0
    body = _body(ready_dataset, embedded_base, weights="full", backend="modal", modal_gpu="A10G", hyperparameters=fsdp)
    r = auth_client.post("/api/training/jobs/", body, format="json")
    assert r.status_code == 201 and r.json()["hyperparameters"]["sharding"] == "fsdp", r.content
