"""A job with ``report_to: ["tensorboard"]`` trained by a real Celery worker: its TensorBoard events are stored with
the job and downloadable through daphne, and TensorBoard's own reader finds the train loss of every step."""

from __future__ import annotations

import io
import tarfile

import pytest

from tests.clients import post_json, register_session, wait_for_status
from tests.factories import TINY_HYPER, make_ready_dataset
from training.models import TrainingJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_tensorboard_events_of_a_worker_run_are_downloadable(daphne_url, training_worker, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from accounts.models import User
    from models_app.models import BaseModel

    s = register_session(daphne_url, "tracker")
    user = User.objects.get(username="tracker")
    ds = make_ready_dataset(user)
    base = BaseModel.objects.ensure_embedded()
    hyper = {**TINY_HYPER, "max_steps": 3, "report_to": ["tensorboard"]}
    body = {"name": "tb", "base_model": base.pk, "dataset": ds.pk, "method": "sft", "weights": "lora"}
    r = post_json(s, daphne_url, "/api/training/jobs/", {**body, "hyperparameters": hyper})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    wait_for_status(job_id, {"succeeded", "failed"}, timeout=300)
    job = TrainingJob.objects.get(pk=job_id)
    assert job.status == "succeeded", job.error
    assert job.result["tracking"]["tensorboard"] == "tensorboard/"

    r = s.get(f"{daphne_url}/api/training/jobs/{job_id}/tensorboard/")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        tar.extractall(tmp_path / "tb", filter="data")
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]
    points = s.get(f"{daphne_url}/api/training/jobs/{job_id}/metrics/").json()
    losses = [p["loss"] for p in points if p["kind"] == "metric"]
    assert [round(e.value, 3) for e in acc.Scalars("train/loss")] == [round(v, 3) for v in losses]
