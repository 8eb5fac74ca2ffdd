"""Experiment tracking on the platform: the W&B API key (write-only, encrypted at rest), the checks at job creation,
the environment a run gets, and the TensorBoard events of a job downloadable as an archive."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from django.db import connection

from accounts import crypto
from accounts import services as accounts
from accounts.models import User
from tests.factories import TINY_HYPER, TrainingJobFactory
from training import tracking
from training.engine.errors import ConfigError
from training.models import TrainingJob

pytestmark = pytest.mark.django_db
KEY = "wandbKeyForAlice0123456789abcdef0123wxyz"


def _raw_key(user_id: int) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT wandb_key_encrypted FROM accounts_user WHERE id = %s", [user_id])
        return cur.fetchone()[0]


def _job_body(ds, base, report_to):
    hyper = {**TINY_HYPER, "report_to": report_to}
    return {
        "name": "t",
        "base_model": base.pk,
        "dataset": ds.pk,
        "method": "sft",
        "weights": "lora",
        "hyperparameters": hyper,
    }


def test_wandb_key_is_write_only_and_encrypted_at_rest(auth_client, user):
    r = auth_client.post("/api/auth/wandb-key/", {"key": KEY}, format="json")
    assert r.status_code == 200, r.content
    assert r.json() == {"present": True, "last4": "wxyz"}
    raw = _raw_key(user.id)
    assert raw and KEY not in raw and crypto.decrypt(raw) == KEY
    replies = [auth_client.get(p) for p in ("/api/auth/wandb-key/", "/api/auth/me/")]
    assert all(KEY not in r.content.decode() for r in replies)
    assert replies[0].json() == {"present": True, "last4": "wxyz"}
    assert replies[1].json()["has_wandb_key"] is True and replies[1].json()["wandb_key_last4"] == "wxyz"
    assert "wandb_key_encrypted" in accounts.ENCRYPTED_FIELDS  # rotated with the other secrets
    assert auth_client.delete("/api/auth/wandb-key/").status_code == 204
    assert auth_client.get("/api/auth/wandb-key/").json() == {"present": False, "last4": ""}
    assert _raw_key(user.id) == ""


@pytest.mark.parametrize("bad", ["", "short-key", "has space " + "x" * 40, "x" * 300])
def test_bad_wandb_key_answers_400_and_stores_nothing(auth_client, user, bad):
    r = auth_client.post("/api/auth/wandb-key/", {"key": bad}, format="json")
    assert r.status_code == 400, r.content
    assert "key" in r.json()["errors"]
    assert _raw_key(user.id) == ""


@pytest.mark.parametrize(
    ("report_to", "needle"),
    [
        (["mlflow"], "no MLflow tracking server configured"),
        (["wandb"], "Weights & Biases API key"),
        (["tensorbord"], "did you mean 'tensorboard'"),
    ],
)
def test_job_with_an_unusable_tracker_answers_400(
    auth_client, ready_dataset, embedded_base, settings, report_to, needle
):
    settings.MLFLOW_TRACKING_URI = ""
    r = auth_client.post("/api/training/jobs/", _job_body(ready_dataset, embedded_base, report_to), format="json")
    assert r.status_code == 400, r.content
    assert needle in r.json()["detail"]
    assert "hyperparameters.report_to" in r.json()["errors"]
    assert TrainingJob.objects.count() == 0


def test_run_environment_carries_the_tracker_settings_and_key(
    auth_client, user, ready_dataset, embedded_base, settings, django_capture_on_commit_callbacks
):
    settings.MLFLOW_TRACKING_URI = "http://127.0.0.1:5999"
    settings.MLFLOW_EXPERIMENT_NAME = "team-a"
    accounts.save_wandb_key(user, key=KEY)
    body = _job_body(ready_dataset, embedded_base, ["tensorboard", "mlflow", "wandb"])
    with django_capture_on_commit_callbacks(execute=False):
        r = auth_client.post("/api/training/jobs/", body, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["hyperparameters"]["report_to"] == ["tensorboard", "mlflow", "wandb"]
    job = TrainingJob.objects.get(pk=r.json()["id"])
    env = tracking.run_environment(job)
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5999" and env["MLFLOW_EXPERIMENT_NAME"] == "team-a"
    assert env["WANDB_API_KEY"] == KEY
    assert KEY not in str(job.hyperparameters) and KEY not in r.content.decode()
    with tracking.environment({"WANDB_API_KEY": KEY}):
        assert os.environ["WANDB_API_KEY"] == KEY
    assert os.environ.get("WANDB_API_KEY") != KEY  # restored after the run
    accounts.delete_wandb_key(User.objects.get(pk=user.pk))
    job.refresh_from_db()
    with pytest.raises(ConfigError, match="API key was deleted"):
        tracking.run_environment(TrainingJob.objects.select_related("owner").get(pk=job.pk))


def _write_events(folder: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    for step, loss in ((1, 2.5), (2, 2.0)):
        writer.add_scalar("train/loss", loss, step)
    writer.close()


def test_tensorboard_events_download_as_a_tar(auth_client, client, user, other_user, tmp_path, settings):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings.MEDIA_ROOT = tmp_path / "media"
    job = TrainingJobFactory(
        owner=user, status="succeeded", hyperparameters={**TINY_HYPER, "report_to": ["tensorboard"]}
    )
    assert auth_client.get(f"/api/training/jobs/{job.pk}/tensorboard/").status_code == 409  # none stored yet
    _write_events(tmp_path / "run" / "tensorboard")
    result = tracking.store_tensorboard(
        job.pk, tmp_path / "run", {"status": "succeeded", "tracking": {"tensorboard": "tensorboard/"}}
    )
    TrainingJob.objects.filter(pk=job.pk).update(result=result)

    r = auth_client.get(f"/api/training/jobs/{job.pk}/tensorboard/")
    assert r.status_code == 200, r.content
    assert r["Content-Type"] == "application/x-tar"
    assert f'filename="job-{job.pk}-tensorboard.tar"' in r["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(b"".join(r.streaming_content))) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    acc = EventAccumulator(str(tmp_path / "unpacked"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 2.5), (2, 2.0)]

    client.force_login(other_user)
    assert client.get(f"/api/training/jobs/{job.pk}/tensorboard/").status_code == 404
