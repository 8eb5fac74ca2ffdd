"""A Modal job on 2 GPUs for real, through the subprocess stand-in (tests/fakes/modal.py): the container is asked for
``<TYPE>:2``, remote_train runs the engine's command line under torchrun (2 gloo ranks on CPU) and relays rank 0's
events through the signed callback: one set of metrics, checkpoints and the final model uploaded to the store. A
cancel (the platform's stop answer and a SIGTERM to the container) stops every rank with a checkpoint; a SIGTERM
alone (Modal preempting the container) stores the checkpoint and the job is requeued at once to resume from it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.clients import wait_for_status
from tests.factories import TINY_HYPER, make_ready_dataset
from tests.processes import torchrun_ranks
from training.models import TrainingJob


def _rank_pids(job_id: int) -> list[int]:
    """The torchrun ranks of the Modal run of ``job_id`` (their spec file is in the run's folder ``job-<id>/``)."""
    return list(torchrun_ranks(f"job-{job_id}/distributed-spec.json").values())


def _create(name: str, hyper: dict, gpu: str) -> TrainingJob:
    from accounts.models import User
    from models_app.models import BaseModel
    from training import services

    user = User.objects.create_user(username=name, email=f"{name}@example.com", password="x-Strong-pass-1")
    ds = make_ready_dataset(user)
    base = BaseModel.objects.ensure_embedded()
    return services.create_job(
        owner=user,
        name=name,
        base_model_id=base.pk,
        dataset_id=ds.pk,
        hyperparameters=hyper,
        backend="modal",
        modal_gpu=gpu,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
@pytest.mark.slow
def test_a_two_gpu_modal_job_reports_once_and_stores_its_checkpoints_and_model(
    training_worker, daphne_url, media_root_for_servers
):
    from models_app.artifacts import model_folder

    hyper = {**TINY_HYPER, "max_steps": 4, "save_steps": 2, "eval_steps": 0, "num_processes": 2}
    job = _create("modal-ddp", hyper, "H100")
    deadline = time.monotonic() + 240
    while not TrainingJob.objects.get(pk=job.pk).checkpoint_key:  # uploaded from the container while it trains
        current = TrainingJob.objects.get(pk=job.pk)
        assert current.status not in ("failed", "cancelled", "succeeded"), current.error
        assert time.monotonic() < deadline, "no checkpoint stored in time"
        time.sleep(0.3)
    assert TrainingJob.objects.get(pk=job.pk).checkpoint_key.startswith(f"artifacts/checkpoints/job-{job.pk}/")
    done = wait_for_status(job.pk, ("succeeded", "failed", "cancelled"), 240)
    assert done.status == "succeeded", done.error
    assert done.external_id.startswith("fake-H100:2-")  # the container was asked for 2 H100s
    from training.pricing import modal_cost_usd

    assert done.compute_seconds > 0  # and the job pays for both
    assert float(done.cost_usd) == pytest.approx(modal_cost_usd("H100", done.compute_seconds) * 2, abs=1e-3)
    steps = list(done.metric_points.filter(kind="metric").order_by("seq").values_list("step", flat=True))
    assert steps == [1, 2, 3, 4]  # rank 0's metrics only, once each
    assert done.last_checkpoint_step == 4 and done.result["final_step"] == 4
    model = done.produced_model
    assert model.artifact_key.startswith(f"artifacts/models/job-{done.pk}/") and model.is_adapter
    with model_folder(model) as folder:
        assert (folder / "adapter_config.json").is_file()
    lines = list(done.log_lines.values_list("line", flat=True))
    assert any("spawned on Modal (H100:2)" in line for line in lines), lines


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
@pytest.mark.slow
def test_cancelling_a_two_gpu_modal_job_stops_every_rank_with_a_checkpoint(
    training_worker, daphne_url, media_root_for_servers
):
    from tests.fakes.modal import SubprocessModalClient
    from training import services

    hyper = {**TINY_HYPER, "max_steps": 60, "save_steps": 100, "eval_steps": 0, "num_processes": 2}
    job = _create("modal-ddp-cancel", hyper, "A10G")
    deadline = time.monotonic() + 240
    while not TrainingJob.objects.get(pk=job.pk).metric_points.filter(kind="metric", step__gte=2).exists():
        current = TrainingJob.objects.get(pk=job.pk)
        assert current.status not in ("failed", "cancelled", "succeeded"), current.error
        assert time.monotonic() < deadline, "no training step in time"
        time.sleep(0.3)
    ranks = _rank_pids(job.pk)
    assert len(ranks) == 2, ranks
    # The platform cancels: the job asks its run to stop, and the Modal call is cancelled (SIGTERM to the container).
    services.request_cancel(TrainingJob.objects.get(pk=job.pk))
    job.refresh_from_db()
    SubprocessModalClient().cancel(job.external_id)
    done = wait_for_status(job.pk, ("cancelled", "failed", "succeeded"), 150)
    time.sleep(1)
    assert not [pid for pid in ranks if Path(f"/proc/{pid}").exists()]  # every rank has exited
    assert done.status == "cancelled", done.error
    assert done.external_id.startswith("fake-A10G:2-")
    assert 2 <= done.last_checkpoint_step < 60 and done.checkpoint_key  # saved on the way out, and uploaded
    steps = list(done.metric_points.filter(kind="metric").order_by("seq").values_list("step", flat=True))
    assert steps == list(range(1, len(steps) + 1))
    lines = list(done.log_lines.values_list("line", flat=True))
    assert any("got signal 15" in line for line in lines), lines  # the container's signal reached the relay


def _exited(pid: int) -> bool:
    """True once ``pid`` has ended (gone, or a zombie its parent, the worker, has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
@pytest.mark.slow
def test_a_signal_to_the_container_alone_stores_a_checkpoint_and_leaves_the_job_to_resume(
    training_worker, daphne_url, media_root_for_servers
):
    """Modal preempting or shutting down the container (a SIGTERM with no cancel): every rank stops with a checkpoint,
    which is uploaded; the run reports itself interrupted, so the job is not cancelled but requeued at once."""
    from tests.fakes.modal import SubprocessModalClient

    hyper = {**TINY_HYPER, "max_steps": 60, "save_steps": 100, "eval_steps": 0, "num_processes": 2}
    job = _create("modal-ddp-preempt", hyper, "T4")
    deadline = time.monotonic() + 240
    while not TrainingJob.objects.get(pk=job.pk).metric_points.filter(kind="metric", step__gte=2).exists():
        current = TrainingJob.objects.get(pk=job.pk)
        assert current.status not in ("failed", "cancelled", "succeeded"), current.error
        assert time.monotonic() < deadline, "no training step in time"
        time.sleep(0.3)
    job.refresh_from_db()
    ranks = _rank_pids(job.pk)
    assert len(ranks) == 2, ranks
    SubprocessModalClient().cancel(job.external_id)
    container = int(job.external_id.rsplit("-", 1)[1])
    deadline = time.monotonic() + 150
    while not _exited(container):
        assert time.monotonic() < deadline, "the container did not stop in time"
        time.sleep(0.3)
    assert all(_exited(pid) for pid in ranks)
    job.refresh_from_db()
    assert not job.cancel_requested and 2 <= job.last_checkpoint_step < 60 and job.checkpoint_key  # to resume from
    history = job.attempt_history
    assert history[0]["outcome"] == "interrupted: the Modal container was stopped (signal 15)", history
    assert job.status in ("recovering", "queued", "starting", "running"), job.status  # requeued at once
    lines = list(job.log_lines.values_list("line", flat=True))
    assert any("got signal 15" in line for line in lines), lines
    # The next attempt is this test's to stop: cancel it, and stop its container if one was spawned.
    from training import services

    services.request_cancel(job)
    done = wait_for_status(job.pk, ("cancelled", "failed", "succeeded"), 150)
    assert done.status == "cancelled", done.error
    if done.attempts > 1 and done.external_id != job.external_id:
        SubprocessModalClient().cancel(done.external_id)


def test_a_checkpoint_snapshot_outlives_the_rotated_folder(tmp_path):
    """The relay links a published checkpoint aside at once: the engine, training on meanwhile, may rotate the folder
    away before the upload packs it."""
    from training.engine.modal_app import _snapshot

    folder = tmp_path / "out" / "checkpoint-2"
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"w" * 4096)
    (folder / "sub" / "state.json").write_text("{}")
    snapshot = _snapshot(str(folder), tmp_path / "packing")
    assert snapshot is not None
    shutil.rmtree(folder)  # rotate_checkpoints
    assert (Path(snapshot) / "adapter_model.safetensors").read_bytes() == b"w" * 4096
    assert (Path(snapshot) / "sub" / "state.json").read_text() == "{}"
    assert _snapshot(str(folder), tmp_path / "packing") is None  # already gone: nothing to upload


def test_an_engine_error_on_the_ranks_is_raised_with_its_kind(tmp_path):
    """Rank 0's EngineError (printed on stderr) comes back as the EngineError the remote run reports as failed."""
    from training.engine.callbacks.base import ListCallback
    from training.engine.embedded import embedded_model_path
    from training.engine.errors import EngineError
    from training.engine.modal_app import relay_distributed
    from training.engine.spec import TrainingSpec

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"nothing": 1}\n' * 4)
    (tmp_path / "out").mkdir()
    spec = TrainingSpec.from_dict(
        {
            "job_id": "relay-error",
            "base_model": str(embedded_model_path()),
            "output_dir": str(tmp_path / "out"),
            "method": "sft",
            "weights": "lora",
            "data": {"train_files": [str(bad)]},
            "hyper": {"max_steps": 2, "num_processes": 2},
        }
    )
    events = ListCallback()
    with pytest.raises(EngineError, match="Cannot detect the format") as raised:
        relay_distributed(spec, [events], tmp_path / "packing")
    assert getattr(raised.value, "kind", "") == "data"
    assert [e.status for e in events.events if e.type == "status"][-1] == "failed"  # relayed before the error
