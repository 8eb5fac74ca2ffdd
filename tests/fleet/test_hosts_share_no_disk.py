"""Hosts that share no disk. Every process below runs as a separate host: its own mount namespace with
an empty tmpfs over the project's var/ (its scratch, cache and media live there), so a host path written by one
process and read by another fails loudly. They share only PostgreSQL, Redis and an S3 bucket (moto's S3 server).

A LoRA job on the embedded model: the first training worker is SIGKILLed after its first stored checkpoint; the
second, on another host, resumes from the stored checkpoint and succeeds; then a GGUF export runs on a default worker
on a third host that never saw the training folder, which also imports it into Ollama (fake Ollama) and pushes it to
the Hub (fake Hub); the playground answers from an inference worker on a fourth host."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.clients import wait_for_status
from tests.factories import TINY_HYPER, make_ready_dataset
from tests.plugins.ollama import FAST_VERIFY, GOLDEN_PROMPT
from tests.processes import ROOT, can_isolate_hosts, server_env, start_celery_worker, stop
from training.models import TrainingJob

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.e2e,
    pytest.mark.fleet,
    pytest.mark.skipif(not can_isolate_hosts(), reason="simulating separate hosts needs root and unshare"),
]
VAR = ROOT / "var"


def _host_env(test_db_name: str, s3, **extra: str) -> dict[str, str]:  # noqa: ANN001
    return server_env(
        test_db_name,
        **s3.env(),
        TRAINING_LEASE_SECONDS="6",
        TRAINING_HEARTBEAT_SECONDS="1",
        ARTIFACT_CACHE_DIR=str(VAR / "host-cache"),
        TRAINING_RUNS_DIR=str(VAR / "host-runs"),
        MEDIA_ROOT=str(VAR / "host-media"),
        EXPORT_WORK_DIR=str(VAR / "host-exports"),
        **extra,
    )


@contextlib.contextmanager
def _queues_served_only_by_new_workers(*queues: str) -> Iterator[None]:
    """Workers other tests left running (a session-wide default worker, say) stop taking these queues for the block,
    so its tasks run on the hosts it starts (Celery's remote control: cancel_consumer, then add_consumer)."""
    from finetune.celery import app

    others = [node for reply in (app.control.ping(timeout=1.0) or []) for node in reply]
    for queue in queues:
        if others:
            app.control.cancel_consumer(queue, destination=others, reply=True, timeout=5)
    try:
        yield
    finally:
        for queue in queues:
            if others:
                app.control.add_consumer(queue, destination=others, reply=True, timeout=5)


def _wait_task(model, pk, timeout=400):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while (row := model.objects.get(pk=pk)).status not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, f"{model.__name__} {pk} stayed {row.status} ({row.stage})"
        time.sleep(0.5)
    return row


def test_a_job_resumes_on_another_host_and_its_model_serves_from_hosts_that_never_saw_it(
    test_db_name, tmp_path, s3_storage, fake_hub, fake_ollama, settings, auth_client, user, request
):
    from accounts import services as accounts
    from models_app import exports, hub, ollama
    from models_app.models import BaseModel, HubPush, ModelExport, OllamaImport
    from training import services

    s3 = s3_storage
    for name, value in FAST_VERIFY.items():
        setattr(settings, name, value)
    accounts.save_hf_token(user, token="hf_validTokenForAlice1234")  # alice-hf on the fake Hub
    ds = make_ready_dataset(user)  # stored in the bucket
    assert ds.files.get().file.name in s3.keys()
    base = BaseModel.objects.ensure_embedded()
    env = _host_env(test_db_name, s3)
    w1, _ = start_celery_worker(env, tmp_path / "host-a.log", queues="training", private_dirs=[VAR])
    try:
        job = services.create_job(
            owner=user,
            name="fleet",
            base_model_id=base.pk,
            dataset_id=ds.pk,
            hyperparameters={**TINY_HYPER, "max_steps": 6, "save_steps": 2},
        )
        deadline = time.monotonic() + 240
        while not (row := TrainingJob.objects.get(pk=job.pk)).checkpoint_key:
            assert time.monotonic() < deadline, "no stored checkpoint in time"
            assert row.status not in ("failed", "succeeded"), row.error
            time.sleep(0.2)
        os.killpg(w1.pid, signal.SIGKILL)
        w1.wait(10)
    finally:
        stop(w1)
    killed = TrainingJob.objects.get(pk=job.pk)
    assert killed.checkpoint_key in s3.keys(f"artifacts/checkpoints/job-{job.pk}/")
    checkpoint_bytes = killed.checkpoint_size
    assert checkpoint_bytes == s3.keys()[killed.checkpoint_key] > 0
    print(f"\nfleet: bytes uploaded per checkpoint (embedded model, LoRA r=8): {checkpoint_bytes}")
    # This host never saw host A's scratch folder, which lay in A's private var/.
    assert not list(VAR.glob("host-runs/job-*"))
    time.sleep(7)  # host A's lease expires; beat's recovery task requeues the job (called here directly)
    assert services.recover_expired_leases() == 1

    w2, _ = start_celery_worker(env, tmp_path / "host-b.log", queues="training", private_dirs=[VAR])
    try:
        done = wait_for_status(job.pk, ("succeeded", "failed"), 300)
        # The worker deletes the checkpoints once the final model's row is committed (on commit): it is not stopped
        # before it had the moment that takes (on a loaded machine the test saw the status first).
        deadline = time.monotonic() + 30
        while s3.keys(f"artifacts/checkpoints/job-{job.pk}/") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop(w2)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    logs = " ".join(done.log_lines.values_list("line", flat=True))
    steps = list(done.metric_points.filter(kind="metric").order_by("seq").values_list("step", flat=True))
    assert steps.count(1) == 1 and steps[-1] == 6, steps  # resumed from the stored checkpoint, not from step 0
    model = done.produced_model
    assert model.artifact_key in s3.keys(f"artifacts/models/job-{job.pk}/"), logs
    assert s3.keys(f"artifacts/checkpoints/job-{job.pk}/") == {}  # the final model replaced the checkpoint

    stack = contextlib.ExitStack()
    stack.enter_context(_queues_served_only_by_new_workers("default", "inference"))
    request.addfinalizer(stack.close)

    # Host C (default worker): GGUF export, Ollama import, Hub push, from the stored model only.
    env_c = _host_env(
        test_db_name,
        s3,
        HF_ENDPOINT=fake_hub.url,
        OLLAMA_HOST=fake_ollama.url,
        EXPORT_VERIFY_PROMPTS=GOLDEN_PROMPT,
        EXPORT_VERIFY_MAX_NEW_TOKENS="16",
    )
    w3, _ = start_celery_worker(env_c, tmp_path / "host-c.log", queues="default", private_dirs=[VAR])
    try:
        export = _wait_task(
            ModelExport, exports.request_export(user, model.pk, "gguf", settings.OLLAMA_QUANTIZATION).pk
        )
        assert export.status == "succeeded", export.error
        assert export.verification.get("passed") is True
        assert s3.keys()[export.file_key] == export.size_bytes > 0
        imported = _wait_task(OllamaImport, ollama.request_ollama_import(user, model.pk, "fleet-model").pk)
        assert imported.status == "succeeded", imported.error
        assert f"{imported.ollama_name}:latest" in fake_ollama.models  # in the user's namespace
        push = _wait_task(HubPush, hub.request_push(user, model.pk, "fleet-model", private=True).pk)
        assert push.status == "succeeded", push.error
        assert "adapter_model.safetensors" in fake_hub.repos["alice-hf/fleet-model"].head.files
    finally:
        stop(w3)

    # Host D (inference worker): the playground answers with the fine-tuned model.
    w4, _ = start_celery_worker(
        _host_env(test_db_name, s3), tmp_path / "host-d.log", queues="inference", private_dirs=[VAR]
    )
    try:
        r = auth_client.post(
            f"/api/models/{model.pk}/generate/",
            {"messages": [{"role": "user", "content": GOLDEN_PROMPT}], "temperature": 0, "max_new_tokens": 8},
            format="json",
        )
    finally:
        stop(w4)
    assert r.status_code == 200, r.content
    assert r.json()["tokens"] > 0 and r.json()["text"].strip()
