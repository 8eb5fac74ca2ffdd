"""The Modal backend through the subprocess stand-in: the same remote entrypoint runs in a local process, its
metrics arrive through the signed callback endpoint and show on the same websocket; forged signatures are refused."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile

import pytest
from django.core import signing

from models_app.artifacts import model_folder
from tests.clients import post_json, register_session, wait_for_status
from tests.factories import TINY_HYPER, make_ready_dataset
from tests.processes import run_async
from training.models import TrainingJob
from training.runners.modal import callback_token


@pytest.mark.django_db
def test_forged_or_foreign_callback_signature_is_refused(client, user, embedded_base, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "m"
    ds = make_ready_dataset(user)
    job = TrainingJob.objects.create(
        owner=user,
        name="m",
        base_model=embedded_base,
        dataset=ds,
        method="sft",
        weights="lora",
        hyperparameters=TINY_HYPER,
        backend="modal",
        modal_gpu="T4",
        status="running",
    )
    other = TrainingJob.objects.create(
        owner=user,
        name="n",
        base_model=embedded_base,
        dataset=ds,
        method="sft",
        weights="lora",
        hyperparameters=TINY_HYPER,
        backend="modal",
        modal_gpu="T4",
    )
    url = f"/api/internal/jobs/{job.pk}/events/"
    event = {"events": [{"type": "metric", "step": 1, "total_steps": 2, "loss": 1.0}]}
    forged = signing.dumps({"job": job.pk, "attempt": 1}, salt="something-else")
    for headers in (
        {},
        {"HTTP_AUTHORIZATION": f"Bearer {forged}"},
        {"HTTP_AUTHORIZATION": f"Bearer {callback_token(other)}"},
        {"HTTP_AUTHORIZATION": "Bearer " + callback_token(job)[:-2] + "xx"},
    ):
        r = client.post(url, json.dumps(event), content_type="application/json", **headers)
        assert r.status_code == 403, headers
    assert job.metric_points.count() == 0
    r = client.post(
        url, json.dumps(event), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {callback_token(job)}"
    )
    assert r.status_code == 200 and r.json() == {"stop": False}
    assert job.metric_points.count() == 1
    TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    r = client.post(
        url,
        json.dumps({"events": []}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {callback_token(job)}",
    )
    assert r.json() == {"stop": True}  # how a cancel reaches the remote run
    # A run of an earlier attempt (preempted, then the job was requeued) is told it is no longer the job's run.
    stale = callback_token(job)
    TrainingJob.objects.filter(pk=job.pk).update(attempts=job.attempts + 1)
    r = client.post(
        url, json.dumps({"events": []}), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {stale}"
    )
    assert r.status_code == 410


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_modal_job_reports_through_the_callback_to_the_same_websocket(daphne_url, training_worker, tmp_path):
    import websockets

    from accounts.models import User
    from models_app.models import BaseModel

    s = register_session(daphne_url, "modaluser")
    user = User.objects.get(username="modaluser")
    ds = make_ready_dataset(user)
    base = BaseModel.objects.ensure_embedded()
    cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())

    async def scenario():
        r = await asyncio.to_thread(
            post_json,
            s,
            daphne_url,
            "/api/training/jobs/",
            {
                "name": "on modal",
                "base_model": base.pk,
                "dataset": ds.pk,
                "method": "sft",
                "weights": "lora",
                "backend": "modal",
                "modal_gpu": "A10G",
                "hyperparameters": {**TINY_HYPER, "max_steps": 4, "report_to": ["tensorboard"]},
            },
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        url = daphne_url.replace("http://", "ws://") + f"/ws/training/{job_id}/"
        metrics, final = [], None
        async with websockets.connect(url, additional_headers={"Cookie": cookie}, origin=daphne_url) as ws:
            while final is None:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 300))
                if msg["type"] == "metric":
                    metrics.append(msg)
                elif msg["type"] == "status" and msg["status"] in ("succeeded", "failed", "cancelled"):
                    final = msg["status"]
        return job_id, metrics, final

    job_id, metrics, final = run_async(scenario())
    job = TrainingJob.objects.get(pk=job_id)
    assert final == "succeeded", job.error
    assert job.external_id.startswith("fake-A10G-")
    # Cost is tracked per job: the GPU time held x the A10G's price from the settings table.
    from django.conf import settings

    assert job.compute_seconds > 0
    assert job.cost_usd == pytest.approx(
        job.compute_seconds / 3600 * settings.MODAL_GPU_PRICES_USD_PER_HOUR["A10G"], abs=1e-3
    )
    assert [m["step"] for m in metrics if m["kind"] == "metric"] == [1, 2, 3, 4]
    assert all(m["loss"] is not None and m["tokens_per_s"] > 0 for m in metrics if m["kind"] == "metric")
    # The final model came back through the artifact upload into the artifact store.
    model = job.produced_model
    assert model.artifact_key.startswith(f"artifacts/models/job-{job.pk}/") and model.is_adapter
    with model_folder(model) as folder:
        assert (folder / "adapter_config.json").is_file()
    # The remote run's TensorBoard events came back too and download like a local job's.
    r = s.get(f"{daphne_url}/api/training/jobs/{job_id}/tensorboard/")
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        assert any("events.out.tfevents" in name for name in tar.getnames()), tar.getnames()


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_callback_events_posted_to_daphne_reach_the_job_websocket(daphne_url, tmp_path):
    import requests
    import websockets

    from accounts.models import User
    from models_app.models import BaseModel

    s = register_session(daphne_url, "cbuser")
    user = User.objects.get(username="cbuser")
    ds = make_ready_dataset(user)
    job = TrainingJob.objects.create(
        owner=user,
        name="cb",
        base_model=BaseModel.objects.ensure_embedded(),
        dataset=ds,
        method="sft",
        weights="lora",
        hyperparameters=TINY_HYPER,
        backend="modal",
        modal_gpu="T4",
        status="running",
        attempts=1,
    )
    token = callback_token(job)
    cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())

    async def scenario():
        url = daphne_url.replace("http://", "ws://") + f"/ws/training/{job.pk}/"
        async with websockets.connect(url, additional_headers={"Cookie": cookie}, origin=daphne_url) as ws:
            got = []
            for step in (1, 2, 3):
                r = await asyncio.to_thread(
                    requests.post,
                    f"{daphne_url}/api/internal/jobs/{job.pk}/events/",
                    json={"events": [{"type": "metric", "step": step, "total_steps": 3, "loss": 2.0 - step / 3}]},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                )
                assert r.status_code == 200
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return got

    got = run_async(scenario())
    assert [(m["type"], m["seq"], m["step"]) for m in got] == [("metric", 1, 1), ("metric", 2, 2), ("metric", 3, 3)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
@pytest.mark.fleet
def test_a_hub_base_model_trains_on_modal_from_the_artifact_store(daphne_url, training_worker, tmp_path):
    """The container gets the Hub model's stored snapshot by URL (hash-checked), never a path of this host, and sends
    the model back to the store."""
    import time

    from accounts.models import User
    from finetune import artifacts
    from models_app.models import BaseModel
    from tests.fakes.hub import tiny_model_files
    from training import services

    files, params = tiny_model_files(vocab=49152, hidden=32)
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json", "model.safetensors"):
        content = files[name]
        (snapshot / name).write_bytes(
            content.read_bytes()
            if hasattr(content, "read_bytes")
            else (content.encode() if isinstance(content, str) else content)
        )
    stored = artifacts.store_folder(snapshot, "artifacts/base-models/modal-test")
    base = BaseModel.objects.create(
        name="tiny llama",
        source="hub",
        repo_id=f"tiny-org/modal-{time.time_ns() % 10**9}",
        revision="a" * 40,
        artifact_key=stored.key,
        artifact_sha256=stored.sha256,
        artifact_size=stored.size,
        architecture="LlamaForCausalLM",
        parameters=params,
        context_length=4096,
        has_chat_template=True,
        private=False,
        gated=False,
    )  # a public repo: shared with every user
    user = User.objects.create_user(username="modalhub", email="modalhub@example.com", password="x-Strong-pass-1")
    ds = make_ready_dataset(user)
    job = services.create_job(
        owner=user,
        name="hub on modal",
        base_model_id=base.pk,
        dataset_id=ds.pk,
        hyperparameters={**TINY_HYPER, "max_steps": 2, "save_steps": 1},
        backend="modal",
        modal_gpu="T4",
    )
    done = wait_for_status(job.pk, ("succeeded", "failed"), 300)
    assert done.status == "succeeded", done.error
    assert done.last_checkpoint_step >= 1  # checkpoints came back through the artifact endpoint while it ran
    model = done.produced_model
    assert model.artifact_key.startswith(f"artifacts/models/job-{job.pk}/") and model.is_adapter
    with model_folder(model) as folder:
        adapter = json.loads((folder / "adapter_config.json").read_text())
        assert (folder / "adapter_model.safetensors").stat().st_size > 0
    assert adapter["peft_type"] == "LORA" and adapter["r"] == TINY_HYPER["lora_r"]
