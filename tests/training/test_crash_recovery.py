"""Crash recovery for real: SIGKILL the worker process mid-training, start a new one: the job resumes from its last
complete checkpoint and succeeds; it never runs twice at once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.clients import wait_for_status
from tests.factories import TINY_HYPER, make_ready_dataset
from tests.processes import server_env, start_celery_worker, stop
from training.models import TrainingJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_sigkilled_worker_job_resumes_from_checkpoint_and_succeeds(test_db_name, tmp_path, media_root_for_servers):
    from accounts.models import User
    from models_app.models import BaseModel
    from training import services

    user = User.objects.create_user(username="crash", email="crash@example.com", password="x-Strong-pass-1")
    ds = make_ready_dataset(user)
    base = BaseModel.objects.ensure_embedded()
    env = server_env(test_db_name, TRAINING_LEASE_SECONDS="6", TRAINING_HEARTBEAT_SECONDS="1")
    hyper = {**TINY_HYPER, "max_steps": 10, "save_steps": 2}
    w1, _ = start_celery_worker(env, tmp_path / "w1.log", queues="training")
    try:
        job = services.create_job(
            owner=user, name="crash", base_model_id=base.pk, dataset_id=ds.pk, hyperparameters=hyper
        )
        deadline = time.monotonic() + 240
        while TrainingJob.objects.get(pk=job.pk).last_checkpoint_step < 4:
            assert time.monotonic() < deadline, "no checkpoint in time"
            assert TrainingJob.objects.get(pk=job.pk).status not in ("failed", "succeeded")
            time.sleep(0.3)
        os.killpg(w1.pid, signal.SIGKILL)  # the whole worker (main process and its pool child) dies at once
        w1.wait(10)
    finally:
        stop(w1)
    killed_at = TrainingJob.objects.get(pk=job.pk)
    assert killed_at.status in ("running", "starting") and killed_at.attempts == 1
    checkpoint = killed_at.last_checkpoint_step
    time.sleep(7)  # the lease expires; beat's recovery task requeues the job (called here directly)
    assert services.recover_expired_leases() == 1
    assert TrainingJob.objects.get(pk=job.pk).status == "recovering"
    w2, _ = start_celery_worker(env, tmp_path / "w2.log", queues="training")
    try:
        done = wait_for_status(job.pk, ("succeeded", "failed"), 300)
    finally:
        stop(w2)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    steps = list(done.metric_points.filter(kind="metric").order_by("seq").values_list("step", flat=True))
    assert steps[-1] == 10 and set(steps) == set(range(1, 11))
    assert steps.count(1) == 1  # the second attempt resumed from the checkpoint instead of starting over
    restart = (
        next(i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]) if len(set(steps)) < len(steps) else None
    )
    if restart is not None:
        assert steps[restart] == checkpoint + 1 or steps[restart] > checkpoint - 2
    assert done.result["final_step"] == 10
