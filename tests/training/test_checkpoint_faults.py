"""Checkpoint faults through the real worker path (a `celery worker` process on the real broker and database):

- the disk fills up while a checkpoint is saved: the job fails with a plain message (no server path), the stored
  checkpoint before it is intact, and once there is space again the resumed job finishes from it;
- the newest stored checkpoint is damaged (its bytes changed in the store, or it was written truncated): the resumed
  job starts from the checkpoint before it and says so in its log.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.clients import wait_for_status
from tests.factories import TINY_HYPER, make_ready_dataset
from tests.processes import ROOT, can_isolate_hosts, server_env, start_celery_worker, stop
from training.models import LogLine, TrainingJob

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

HYPER = {**TINY_HYPER, "max_steps": 12, "save_steps": 2, "eval_steps": 0}


def _start_job(name: str):  # noqa: ANN202
    from accounts.models import User
    from models_app.models import BaseModel
    from training import services

    user = User.objects.create_user(username=name, email=f"{name}@example.com", password="x-Strong-pass-1")
    ds = make_ready_dataset(user)
    base = BaseModel.objects.ensure_embedded()
    return services.create_job(owner=user, name=name, base_model_id=base.pk, dataset_id=ds.pk, hyperparameters=HYPER)


def _wait_for_checkpoint(job_id: int, step: int, timeout: float = 300) -> TrainingJob:
    deadline = time.monotonic() + timeout
    while True:
        job = TrainingJob.objects.get(pk=job_id)
        if job.last_checkpoint_step >= step:
            return job
        assert job.status not in TrainingJob.FINISHED, (job.status, job.error)
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.2)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _log_lines(job_id: int) -> list[str]:
    return list(LogLine.objects.filter(job_id=job_id).order_by("seq").values_list("line", flat=True))


def _assert_no_server_paths(texts: list[str], *paths: Path) -> None:
    for text in texts:
        for path in (*paths, ROOT):
            assert str(path) not in text, text


# --- disk full -----------------------------------------------------------------------------------------------------


def _resize_private_tmpfs(pid: int, folder: Path, size: str) -> None:
    """Remount the tmpfs over `folder` in the mount namespace of process `pid` with another size."""
    subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "--", "mount", "-o", f"remount,size={size}", str(folder)],
        check=True,
        capture_output=True,
        timeout=10,
    )


def _fill_private_tmpfs(pid: int, folder: Path) -> None:
    """Shrink the tmpfs over `folder` to what it holds now plus 64 KiB: the next checkpoint does not fit."""
    for _ in range(50):
        st = os.statvfs(f"/proc/{pid}/root{folder}")  # the path as the worker sees it, in its own namespace
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        try:
            _resize_private_tmpfs(pid, folder, str(used + 64 * 1024))
            return
        except subprocess.CalledProcessError:  # a file grew meanwhile: measure again
            time.sleep(0.1)
    raise AssertionError("could not shrink the worker's tmpfs")


@pytest.mark.skipif(not can_isolate_hosts(), reason="a private tmpfs for the worker needs root and unshare")
def test_disk_full_while_saving_a_checkpoint_fails_the_job_clearly_and_it_resumes_once_space_is_back(
    test_db_name, tmp_path, media_root_for_servers
):
    from training import services

    runs = tmp_path / "runs"  # the worker's scratch folders: a tmpfs of its own, which the test fills up
    env = server_env(test_db_name, TRAINING_RUNS_DIR=str(runs))
    worker, _ = start_celery_worker(env, tmp_path / "worker.log", queues="training", private_dirs=[runs])
    try:
        job = _start_job("diskfull")
        _wait_for_checkpoint(job.pk, 2)
        _fill_private_tmpfs(worker.pid, runs)
        failed = wait_for_status(job.pk, ("failed", "succeeded"), 300)

        assert failed.status == "failed", "the run went on with a full disk"
        assert failed.error_kind == "disk_full", (failed.error_kind, failed.error)
        match = re.match(r"No space left on the device while saving the checkpoint of step (\d+): ", failed.error)
        assert match, failed.error
        assert "free" in failed.error and f"step {failed.last_checkpoint_step}" in failed.error
        assert int(match.group(1)) > failed.last_checkpoint_step >= 2
        _assert_no_server_paths([failed.error, *_log_lines(job.pk)], runs, media_root_for_servers)
        # The checkpoint before the failed one is whole in the store.
        stored = media_root_for_servers / failed.checkpoint_key
        assert _sha256(stored) == failed.checkpoint_sha256
        resumed_from, seq_before = failed.last_checkpoint_step, failed.metric_seq

        _resize_private_tmpfs(worker.pid, runs, "2g")  # space is back
        services.resume_job(failed)
        done = wait_for_status(job.pk, ("succeeded", "failed"), 400)
    finally:
        stop(worker)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and done.result["final_step"] == HYPER["max_steps"]
    after = list(
        done.metric_points.filter(kind="metric", seq__gt=seq_before).order_by("seq").values_list("step", flat=True)
    )
    assert after == list(range(resumed_from + 1, HYPER["max_steps"] + 1))  # resumed from the intact checkpoint
    assert not (media_root_for_servers / failed.checkpoint_key).exists()  # finished: the checkpoint is removed


# --- a damaged newest checkpoint -------------------------------------------------------------------------------------


def _damage_in_store(job: TrainingJob, media_root: Path, tmp_path: Path) -> None:
    """Bytes of the stored object change (bit rot, a bad copy): it no longer matches its recorded SHA-256."""
    path = media_root / job.checkpoint_key
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 512] = bytes(512)
    path.write_bytes(bytes(data))


def _store_truncated(job: TrainingJob, media_root: Path, tmp_path: Path) -> None:
    """The newest checkpoint was written truncated (a disk that lost its tail) and uploaded as it was: the object
    matches its hash, but its weights do not load."""
    from finetune import artifacts
    from training import workspace

    folder = tmp_path / f"checkpoint-{job.last_checkpoint_step}"
    with tarfile.open(media_root / job.checkpoint_key) as tar:
        tar.extractall(folder, filter="data")
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    stored = workspace.store_checkpoint(job.pk, str(folder))
    artifacts.delete(job.checkpoint_key)
    TrainingJob.objects.filter(pk=job.pk).update(
        checkpoint_key=stored.key, checkpoint_sha256=stored.sha256, checkpoint_size=stored.size
    )
    shutil.rmtree(folder)


@pytest.mark.parametrize("damage", [_damage_in_store, _store_truncated], ids=["changed-in-store", "truncated"])
def test_a_corrupted_latest_checkpoint_resumes_from_the_one_before(
    damage, test_db_name, tmp_path, media_root_for_servers
):
    from training import services

    env = server_env(test_db_name, TRAINING_RUNS_DIR=str(tmp_path / "runs"))
    worker, _ = start_celery_worker(env, tmp_path / "worker.log", queues="training")
    try:
        job = _start_job("corrupt")
        _wait_for_checkpoint(job.pk, 4)
        services.request_cancel(job)  # the run saves (and stores) a checkpoint at the step it stops at
        stopped = wait_for_status(job.pk, ("cancelled", "succeeded", "failed"), 120)
        assert stopped.status == "cancelled", stopped.error
        assert getattr(stopped, "previous_checkpoint_key", ""), "only the newest checkpoint is kept in the store"
        newest, previous = stopped.last_checkpoint_step, stopped.previous_checkpoint_step
        assert 2 <= previous < newest
        assert _sha256(media_root_for_servers / stopped.previous_checkpoint_key) == stopped.previous_checkpoint_sha256
        damage(stopped, media_root_for_servers, tmp_path)
        seq_before = stopped.metric_seq
        keys = {
            stopped.checkpoint_key,
            stopped.previous_checkpoint_key,
            TrainingJob.objects.get(pk=job.pk).checkpoint_key,
        }  # the damaged one may have been stored anew

        services.resume_job(stopped)
        done = wait_for_status(job.pk, ("succeeded", "failed"), 400)
    finally:
        stop(worker)
    assert done.status == "succeeded", done.error
    lines = _log_lines(job.pk)
    assert any(f"checkpoint of step {newest}" in line and f"step {previous}" in line for line in lines), lines
    _assert_no_server_paths(lines, tmp_path, media_root_for_servers)
    after = list(
        done.metric_points.filter(kind="metric", seq__gt=seq_before).order_by("seq").values_list("step", flat=True)
    )
    assert after == list(range(previous + 1, HYPER["max_steps"] + 1))
    # Finished: no checkpoint stays in the store (neither those of the first attempt nor the damaged one).
    assert done.checkpoint_key == done.previous_checkpoint_key == ""
    assert not [key for key in keys if (media_root_for_servers / key).exists()]
