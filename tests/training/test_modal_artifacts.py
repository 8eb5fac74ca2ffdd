"""What a Modal run exchanges with the platform, without a run: the payload names no host path, stored objects come by
URL bound to the job and its attempt, uploads are checked (size, members) before they reach the store, and a final
report can only name a model this endpoint stored."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from finetune import artifacts
from tests.factories import TINY_HYPER, make_ready_dataset
from training.engine.artifacts import pack_dir
from training.models import TrainingJob
from training.runners.modal import build_payload, callback_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def modal_job(user, embedded_base, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINING_RUNS_DIR = tmp_path / "runs"
    settings.SITE_URL = "http://platform.test"
    ds = make_ready_dataset(user)
    return TrainingJob.objects.create(
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
        attempts=2,
        lease_owner="modal:call-1",
    )


def _folder(root: Path, marker: str) -> Path:
    root.mkdir(parents=True)
    (root / "adapter_config.json").write_text(json.dumps({"r": 8, "marker": marker}))
    (root / "adapter_model.safetensors").write_bytes(b"\0" * 1024)
    return root


def _auth(job: TrainingJob) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {callback_token(job)}"}


def test_the_payload_names_objects_by_url_and_hash_never_a_host_path(modal_job, tmp_path, settings):
    stored = artifacts.store_folder(_folder(tmp_path / "ckpt", "c"), f"artifacts/checkpoints/job-{modal_job.pk}")
    TrainingJob.objects.filter(pk=modal_job.pk).update(
        checkpoint_key=stored.key, checkpoint_sha256=stored.sha256, checkpoint_size=stored.size, last_checkpoint_step=4
    )
    payload = build_payload(TrainingJob.objects.get(pk=modal_job.pk))
    assert payload["objects"] == {
        "checkpoint": {
            "url": f"http://platform.test/api/internal/jobs/{modal_job.pk}/objects/checkpoint/",
            "sha256": stored.sha256,
            "step": 4,
        }
    }
    text = json.dumps(payload)
    for host_path in (settings.MEDIA_ROOT, settings.TRAINING_RUNS_DIR, settings.ARTIFACT_CACHE_DIR, tmp_path):
        assert str(host_path) not in text
    assert payload["spec"]["base_model"] == "embedded/SmolLM2-135M-Instruct"  # from its package on every host


def test_a_remote_resume_gets_the_previous_checkpoint_too(client, modal_job, tmp_path):
    """The fallback a damaged newest checkpoint needs on Modal as well: both are offered, with their steps."""
    prefix = f"artifacts/checkpoints/job-{modal_job.pk}"
    four = artifacts.store_folder(_folder(tmp_path / "c4", "four"), prefix)
    six = artifacts.store_folder(_folder(tmp_path / "c6", "six"), prefix)
    TrainingJob.objects.filter(pk=modal_job.pk).update(
        checkpoint_key=six.key,
        checkpoint_sha256=six.sha256,
        last_checkpoint_step=6,
        previous_checkpoint_key=four.key,
        previous_checkpoint_sha256=four.sha256,
        previous_checkpoint_step=4,
    )
    objects = build_payload(TrainingJob.objects.get(pk=modal_job.pk))["objects"]
    assert {role: (o["sha256"], o["step"]) for role, o in objects.items()} == {
        "checkpoint": (six.sha256, 6),
        "previous_checkpoint": (four.sha256, 4),
    }
    r = client.get(f"/api/internal/jobs/{modal_job.pk}/objects/previous_checkpoint/", **_auth(modal_job))
    assert r.status_code == 200
    with default_storage.open(four.key, "rb") as fh:
        assert b"".join(r.streaming_content) == fh.read()


def test_stored_objects_are_served_to_the_current_attempt_only(client, modal_job, tmp_path):
    stored = artifacts.store_folder(_folder(tmp_path / "ckpt", "c"), f"artifacts/checkpoints/job-{modal_job.pk}")
    TrainingJob.objects.filter(pk=modal_job.pk).update(checkpoint_key=stored.key, checkpoint_sha256=stored.sha256)
    url = f"/api/internal/jobs/{modal_job.pk}/objects/checkpoint/"
    r = client.get(url, **_auth(modal_job))
    assert r.status_code == 200
    with default_storage.open(stored.key, "rb") as fh:
        assert b"".join(r.streaming_content) == fh.read()
    assert client.get(f"/api/internal/jobs/{modal_job.pk}/objects/init_from/", **_auth(modal_job)).status_code == 404
    assert client.get(url).status_code == 403
    stale = TrainingJob.objects.get(pk=modal_job.pk)
    stale.attempts = 1
    assert client.get(url, **_auth(stale)).status_code == 410


def test_uploads_are_checked_then_stored_and_recorded(client, modal_job, tmp_path, settings):
    url = f"/api/internal/jobs/{modal_job.pk}/events/artifact/"
    packed = pack_dir(_folder(tmp_path / "ckpt", "c"), tmp_path / "packs")
    body = packed.path.read_bytes()
    r = client.post(f"{url}?kind=checkpoint&step=6", body, content_type="application/x-tar", **_auth(modal_job))
    assert r.status_code == 200 and r.json() == {"stored": True, "step": 6, "sha256": packed.sha256}
    job = TrainingJob.objects.get(pk=modal_job.pk)
    assert job.checkpoint_key == f"artifacts/checkpoints/job-{job.pk}/{packed.sha256}.tar"
    assert job.checkpoint_sha256 == packed.sha256 and job.last_checkpoint_step == 6
    assert default_storage.size(job.checkpoint_key) == len(body)

    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../../etc/owned")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    r = client.post(f"{url}?kind=final", evil.getvalue(), content_type="application/x-tar", **_auth(modal_job))
    assert r.status_code == 400 and "refused" in r.json()["detail"]

    settings.MODAL_ARTIFACT_MAX_BYTES = 1000
    r = client.post(f"{url}?kind=final", body, content_type="application/x-tar", **_auth(modal_job))
    assert r.status_code == 413


def test_a_final_report_can_only_name_a_model_this_endpoint_stored(client, modal_job, tmp_path, user):
    events = f"/api/internal/jobs/{modal_job.pk}/events/"
    # Some other object in the store (another job's model), claimed as this run's: refused, the job fails plainly.
    other = artifacts.store_folder(_folder(tmp_path / "other", "o"), "artifacts/models/job-999999")
    claim = {
        "final": {
            "status": "succeeded",
            "final_step": 6,
            "total_steps": 6,
            "metrics": {},
            "artifact": {"artifact_key": other.key, "artifact_sha256": other.sha256, "is_adapter": True},
        }
    }
    r = client.post(events, json.dumps(claim), content_type="application/json", **_auth(modal_job))
    assert r.status_code == 200
    job = TrainingJob.objects.get(pk=modal_job.pk)
    assert job.status == "failed" and "never reached the artifact store" in job.error
    assert not hasattr(job, "produced_model") or job.produced_model is None

    # The same run uploading its model first: accepted.
    TrainingJob.objects.filter(pk=job.pk).update(status="running", error="", error_kind="", finished=None)
    packed = pack_dir(_folder(tmp_path / "final", "f"), tmp_path / "packs")
    stored = client.post(
        f"{events}artifact/?kind=final", packed.path.read_bytes(), content_type="application/x-tar", **_auth(modal_job)
    ).json()
    assert stored["artifact_key"] == f"artifacts/models/job-{job.pk}/{packed.sha256}.tar" and stored["is_adapter"]
    claim["final"]["artifact"] = stored
    client.post(events, json.dumps(claim), content_type="application/json", **_auth(modal_job))
    job = TrainingJob.objects.get(pk=job.pk)
    assert job.status == "succeeded", job.error
    assert job.produced_model.artifact_key == stored["artifact_key"]
    assert job.produced_model.artifact_sha256 == packed.sha256


def test_an_interrupted_run_is_requeued_at_once(client, modal_job):
    """A rank lost or the container preempted: the run says so in a final report, and the job goes back to the queue
    at once (it resumes from its last stored checkpoint), not after the heartbeat timeout; the run is told to stop."""
    TrainingJob.objects.filter(pk=modal_job.pk).update(attempt_history=[{"attempt": 2, "worker": "modal:call-1"}])
    events = f"/api/internal/jobs/{modal_job.pk}/events/"
    body = {"final": {"status": "interrupted", "error": "a training process stopped (exit code -9)"}}
    r = client.post(events, json.dumps(body), content_type="application/json", **_auth(modal_job))
    assert r.status_code == 200 and r.json() == {"stop": True}
    job = TrainingJob.objects.get(pk=modal_job.pk)
    assert job.status == "recovering" and job.lease_owner == "" and not job.error
    assert job.attempt_history[-1]["outcome"] == "interrupted: a training process stopped (exit code -9)"
