"""Training jobs for real: a Celery worker process trains SmolLM2 while a websocket client connected through daphne
watches; a SIGKILLed worker's job resumes from its checkpoint; cancel stops within a step."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import websockets
from django.conf import settings

from models_app.artifacts import model_folder
from tests.clients import post_json, register_session, wait_for_status
from tests.factories import TINY_HYPER, alpaca_rows, make_ready_dataset
from tests.processes import run_async
from training.models import TrainingJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_lora_job_streams_metrics_in_order_and_produces_a_model(
    daphne_url, training_worker, tmp_path, media_root_for_servers
):
    from accounts.models import User
    from models_app.models import BaseModel

    s = register_session(daphne_url, "trainer")
    user = User.objects.get(username="trainer")
    ds = make_ready_dataset(user)
    held = make_ready_dataset(user, rows=alpaca_rows(6)[4:], name="held-out alpaca")  # the evaluation dataset
    base = BaseModel.objects.ensure_embedded()
    cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())

    async def scenario():
        r = await asyncio.to_thread(
            post_json,
            s,
            daphne_url,
            "/api/training/jobs/",
            {
                "name": "e2e",
                "base_model": base.pk,
                "dataset": ds.pk,
                "method": "sft",
                "weights": "lora",
                "hyperparameters": TINY_HYPER,
                "compare_prompts": 2,
                "eval_dataset": held.pk,
            },
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        url = daphne_url.replace("http://", "ws://") + f"/ws/training/{job_id}/"
        metrics, statuses = [], []
        async with websockets.connect(url, additional_headers={"Cookie": cookie}, origin=daphne_url) as ws:
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 240))
                if msg["type"] == "metric":
                    metrics.append(msg)
                elif msg["type"] == "status":
                    statuses.append(msg["status"])
                    if msg["status"] in ("succeeded", "failed", "cancelled"):
                        break
        return job_id, metrics, statuses

    job_id, metrics, statuses = run_async(scenario())
    job = TrainingJob.objects.get(pk=job_id)
    assert job.status == "succeeded", job.error
    assert statuses[-1] == "succeeded" and "running" in statuses
    # The websocket may have joined after the first points; whatever it got is in order, and the REST backfill
    # gives every point with gapless sequence numbers.
    seqs = [m["seq"] for m in metrics]
    assert seqs == sorted(seqs) and len(seqs) >= 3
    points = s.get(f"{daphne_url}/api/training/jobs/{job_id}/metrics/").json()
    assert [p["seq"] for p in points] == list(range(1, len(points) + 1))
    train = [p for p in points if p["kind"] == "metric"]
    assert [p["step"] for p in train] == list(range(1, 7))
    assert (train[-1]["loss"] + train[-2]["loss"]) < 0.8 * (train[0]["loss"] + train[1]["loss"])
    for p in train:
        assert p["learning_rate"] is not None and p["tokens_per_s"] > 0 and p["memory_mb"] > 0
    # The final model is in the artifact store (the run's scratch folder is gone); the checkpoint it no longer
    # needs was deleted from the store.
    model = job.produced_model
    assert model.artifact_key.startswith(f"artifacts/models/job-{job.pk}/") and model.is_adapter
    with model_folder(model) as folder:
        assert (folder / "adapter_config.json").is_file()
    assert job.versions.get("torch") and job.last_checkpoint_step >= 2 and job.checkpoint_key == ""
    assert not list(Path(settings.TRAINING_RUNS_DIR).glob(f"job-{job.pk}-*"))
    # The evaluation report: base and fine-tuned answers to the evaluation dataset's 2 prompts, scored against their
    # reference answers, stored with the model and served with it.
    assert job.compare_prompts == 2 and job.eval_dataset_id == held.pk
    report = s.get(f"{daphne_url}/api/models/{model.pk}/").json()["eval_report"]
    comparison, summary = report["comparison"], report["comparison"]["summary"]
    assert [r["reference"].strip() for r in comparison["prompts"]] == [r["output"].strip() for r in alpaca_rows(6)[4:]]
    assert all(r["base"] and r["finetuned"] and r["finetuned_scores"] for r in comparison["prompts"])
    assert summary["references"] == 2 and 0 <= summary["finetuned_rouge_l"] <= 1
    assert summary["base_loss"] > 0 and summary["finetuned_loss"] > 0  # scored on the evaluation rows
    assert model.evaluation["summary"] == summary and report["eval_loss_after"] is not None


def test_websocket_refuses_other_users_and_foreign_origins(daphne_url, tmp_path):
    from accounts.models import User
    from models_app.models import BaseModel

    register_session(daphne_url, "owner1")
    other = register_session(daphne_url, "intruder")
    owner = User.objects.get(username="owner1")
    ds = make_ready_dataset(owner)
    job = TrainingJob.objects.create(
        owner=owner,
        name="x",
        dataset=ds,
        method="sft",
        weights="lora",
        base_model=BaseModel.objects.ensure_embedded(),
        hyperparameters=TINY_HYPER,
        status="cancelled",
    )
    url = daphne_url.replace("http://", "ws://") + f"/ws/training/{job.pk}/"
    cookie = "; ".join(f"{k}={v}" for k, v in other.cookies.items())

    async def refused(headers, origin):
        try:
            async with websockets.connect(url, additional_headers=headers, origin=origin) as ws:
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.exceptions.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code
        return "accepted"

    # Closing before accepting refuses the handshake itself (HTTP 403): the socket never opens.
    assert run_async(refused({"Cookie": cookie}, daphne_url)) == 403
    assert run_async(refused({"Cookie": cookie}, "http://evil.example.com")) == 403
    assert run_async(refused({}, daphne_url)) == 403


def test_cancel_stops_a_running_job_within_one_step(daphne_url, training_worker, tmp_path):
    from accounts.models import User
    from models_app.models import BaseModel
    from training import services

    user = User.objects.create_user(username="canceller", email="c@example.com", password="x-Strong-pass-1")
    ds = make_ready_dataset(user)
    base = BaseModel.objects.ensure_embedded()
    job = services.create_job(
        owner=user,
        name="c",
        base_model_id=base.pk,
        dataset_id=ds.pk,
        hyperparameters={**TINY_HYPER, "max_steps": 200, "save_steps": 100},
    )
    deadline = time.monotonic() + 240
    while TrainingJob.objects.get(pk=job.pk).current_step < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    services.request_cancel(TrainingJob.objects.get(pk=job.pk))
    step_at_cancel = TrainingJob.objects.get(pk=job.pk).current_step
    done = wait_for_status(job.pk, ("cancelled", "failed", "succeeded"), 120)
    assert done.status == "cancelled", done.error
    assert done.current_step <= step_at_cancel + 2
    assert done.last_checkpoint_step >= step_at_cancel - 1  # a checkpoint was saved on the way out
    assert services.recover_expired_leases() == 0
    time.sleep(1)
    assert TrainingJob.objects.get(pk=job.pk).status == "cancelled"
