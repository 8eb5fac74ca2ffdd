"""A job on 2 processes for real (Celery worker -> engine CLI -> torchrun, gloo on CPU): only rank 0's metrics reach
the job; SIGKILL of one rank ends the attempt and the job resumes from its last stored checkpoint and succeeds."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.clients import wait_for_status
from tests.factories import TINY_HYPER, make_ready_dataset
from tests.processes import server_env, start_celery_worker, stop, torchrun_ranks
from training.models import TrainingJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.slow]


def _rank_pid(job_id: int, rank: int) -> int | None:
    """The process of ``rank`` in the torchrun run of ``job_id`` (its spec file is in the job's scratch folder)."""
    return torchrun_ranks(f"job-{job_id}-").get(rank)


def test_two_process_job_reports_once_and_resumes_after_a_rank_is_killed(
    test_db_name, tmp_path, media_root_for_servers
):
    from accounts.models import User
    from models_app.models import BaseModel
    from training import services

    user = User.objects.create_user(username="ddp", email="ddp@example.com", password="x-Strong-pass-1")
    ds = make_ready_dataset(user)
    base = BaseModel.objects.ensure_embedded()
    env = server_env(test_db_name, TRAINING_HEARTBEAT_SECONDS="1")
    hyper = {**TINY_HYPER, "max_steps": 6, "save_steps": 2, "num_processes": 2}
    worker, _ = start_celery_worker(env, tmp_path / "worker.log", queues="training")
    try:
        job = services.create_job(
            owner=user, name="ddp", base_model_id=base.pk, dataset_id=ds.pk, hyperparameters=hyper
        )
        deadline = time.monotonic() + 240
        while TrainingJob.objects.get(pk=job.pk).last_checkpoint_step < 2:
            assert time.monotonic() < deadline, "no checkpoint in time"
            assert TrainingJob.objects.get(pk=job.pk).status not in ("failed", "succeeded")
            time.sleep(0.3)
        pid = _rank_pid(job.pk, 1)
        assert pid is not None, "rank 1 not found"
        os.kill(pid, signal.SIGKILL)
        done = wait_for_status(job.pk, ("succeeded", "failed"), 300)
    finally:
        stop(worker)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2  # the killed rank ended the first attempt; the second resumed
    steps = list(done.metric_points.filter(kind="metric").order_by("seq").values_list("step", flat=True))
    assert set(steps) == set(range(1, 7)) and steps.count(1) == 1  # resumed from a checkpoint, not from scratch
    assert all(steps.count(s) <= 2 for s in steps)  # one set per attempt: rank 0's (2 ranks would double each)
    first = steps[: next((i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]), len(steps))]
    assert first == list(range(1, len(first) + 1))
    assert done.result["final_step"] == 6
    assert done.produced_model is not None


def _torchrun_ranks(job_id: int) -> list[int]:
    return [pid for pid in (_rank_pid(job_id, 0), _rank_pid(job_id, 1)) if pid is not None]


def test_cancel_stops_every_rank_of_a_two_process_job_with_a_checkpoint(
    test_db_name, tmp_path, media_root_for_servers
):
    from accounts.models import User
    from models_app.models import BaseModel
    from training import services

    user = User.objects.create_user(username="ddpc", email="ddpc@example.com", password="x-Strong-pass-1")
    ds = make_ready_dataset(user)
    base = BaseModel.objects.ensure_embedded()
    env = server_env(test_db_name, TRAINING_HEARTBEAT_SECONDS="1")
    hyper = {**TINY_HYPER, "max_steps": 60, "save_steps": 100, "eval_steps": 0, "num_processes": 2}
    worker, _ = start_celery_worker(env, tmp_path / "worker.log", queues="training")
    try:
        job = services.create_job(
            owner=user, name="ddp-cancel", base_model_id=base.pk, dataset_id=ds.pk, hyperparameters=hyper
        )
        deadline = time.monotonic() + 240
        while not TrainingJob.objects.get(pk=job.pk).metric_points.filter(kind="metric", step__gte=2).exists():
            assert time.monotonic() < deadline, "no training step in time"
            time.sleep(0.3)
        ranks = _torchrun_ranks(job.pk)
        assert len(ranks) == 2
        services.request_cancel(TrainingJob.objects.get(pk=job.pk))
        done = wait_for_status(job.pk, ("cancelled", "failed", "succeeded"), 120)
        time.sleep(1)
        assert not [pid for pid in ranks if Path(f"/proc/{pid}").exists()]  # every rank has exited
    finally:
        stop(worker)
    assert done.status == "cancelled", done.error
    assert done.attempts == 1 and 2 <= done.last_checkpoint_step < 60  # the checkpoint saved on the way out
    steps = list(done.metric_points.filter(kind="metric").order_by("seq").values_list("step", flat=True))
    assert steps == list(range(1, len(steps) + 1))  # rank 0's metrics only, once each
