"""The job's stored checkpoints: the newest and the one before it are kept (a damaged newest one falls back to it),
anything older or abandoned is deleted from the store, and finishing or deleting the job removes both."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from finetune.artifacts import StoredArtifact
from tests.factories import TrainingJobFactory
from training import services
from training.models import LogLine, TrainingJob

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def _stored(job: TrainingJob, step: int, tag: str = "") -> StoredArtifact:
    key = default_storage.save(f"artifacts/checkpoints/job-{job.pk}/{step}{tag}.tar", ContentFile(b"tar"))
    return StoredArtifact(key, f"{step:064d}", 3)


def _running_job() -> TrainingJob:
    return TrainingJobFactory(status="running", lease_owner="w1")


def _record(job, step, stored, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        assert services.record_checkpoint(job.pk, "w1", step, stored)


def test_it_keeps_the_newest_checkpoint_and_the_one_before(django_capture_on_commit_callbacks):
    job = _running_job()
    two, four, six = _stored(job, 2), _stored(job, 4), _stored(job, 6)
    for step, stored in ((2, two), (4, four), (6, six)):
        _record(job, step, stored, django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert (job.checkpoint_key, job.last_checkpoint_step) == (six.key, 6)
    assert (job.previous_checkpoint_key, job.previous_checkpoint_step) == (four.key, 4)
    assert job.previous_checkpoint_sha256 == four.sha256 and job.previous_checkpoint_size == 3
    assert not default_storage.exists(two.key) and default_storage.exists(four.key)


def test_a_run_resumed_from_the_previous_checkpoint_drops_the_newer_one(django_capture_on_commit_callbacks):
    """Resumed from step 4 because step 6 would not load: the next checkpoint (step 6 again, other bytes) replaces
    the damaged one, which is never kept as "previous"."""
    job = _running_job()
    four, damaged, six = _stored(job, 4), _stored(job, 6), _stored(job, 6, "-again")
    _record(job, 4, four, django_capture_on_commit_callbacks)
    _record(job, 6, damaged, django_capture_on_commit_callbacks)
    _record(job, 6, six, django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert (job.checkpoint_key, job.previous_checkpoint_key, job.previous_checkpoint_step) == (six.key, four.key, 4)
    assert not default_storage.exists(damaged.key)


def test_a_damaged_newest_checkpoint_is_replaced_by_the_previous_one(django_capture_on_commit_callbacks):
    job = _running_job()
    four, six = _stored(job, 4), _stored(job, 6)
    _record(job, 4, four, django_capture_on_commit_callbacks)
    _record(job, 6, six, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.drop_damaged_checkpoint(job.pk, six.key, "it no longer matches its recorded SHA-256") == 4
    job.refresh_from_db()
    assert (job.checkpoint_key, job.last_checkpoint_step, job.previous_checkpoint_key) == (four.key, 4, "")
    assert not default_storage.exists(six.key)
    line = LogLine.objects.get(job=job).line
    assert line == (
        "the stored checkpoint of step 6 is damaged (it no longer matches its recorded SHA-256); "
        "resuming from the checkpoint before it, step 4"
    )
    # Called again (a second delivery): nothing left to drop.
    assert services.drop_damaged_checkpoint(job.pk, six.key, "again") is None


def test_deleting_a_job_removes_both_stored_checkpoints(django_capture_on_commit_callbacks):
    job = _running_job()
    four, six = _stored(job, 4), _stored(job, 6)
    _record(job, 4, four, django_capture_on_commit_callbacks)
    _record(job, 6, six, django_capture_on_commit_callbacks)
    TrainingJob.objects.filter(pk=job.pk).update(status="cancelled", lease_owner="")
    services.delete_job(TrainingJob.objects.get(pk=job.pk))
    assert not default_storage.exists(four.key) and not default_storage.exists(six.key)


def test_deleting_a_job_also_removes_a_checkpoint_a_killed_attempt_uploaded_but_never_recorded(
    django_capture_on_commit_callbacks,
):
    """A worker killed between uploading a checkpoint and recording it leaves an object nobody names: the job's
    end removes everything under its checkpoint folder (and nothing of another job)."""
    job, other = _running_job(), _running_job()
    four = _stored(job, 4)
    _record(job, 4, four, django_capture_on_commit_callbacks)
    orphan, kept = _stored(job, 6, "-unrecorded"), _stored(other, 2)
    TrainingJob.objects.filter(pk=job.pk).update(status="failed", lease_owner="")
    services.delete_job(TrainingJob.objects.get(pk=job.pk))
    assert not default_storage.exists(four.key) and not default_storage.exists(orphan.key)
    assert default_storage.exists(kept.key)
    with pytest.raises(ValueError, match="refusing to delete"):
        from finetune import artifacts

        artifacts.delete_under("datasets/1")


def test_the_beat_sweeps_checkpoints_no_job_needs_and_keeps_those_that_can_be_resumed(
    django_capture_on_commit_callbacks,
):
    """A worker that died between committing a job's success and its on-commit deletion, and a deletion stopped
    between the row and the files, leave checkpoints nobody names: the beat's sweep removes them. Running, failed and
    cancelled jobs keep theirs (resume, retry)."""
    from training.tasks import sweep_checkpoints

    succeeded, running, failed, deleted = _running_job(), _running_job(), _running_job(), _running_job()
    leaked = [_stored(succeeded, 4), _stored(succeeded, 6, "-unrecorded"), _stored(deleted, 2)]
    kept = [_stored(running, 2), _stored(failed, 8)]
    TrainingJob.objects.filter(pk=succeeded.pk).update(status="succeeded", lease_owner="")
    TrainingJob.objects.filter(pk=failed.pk).update(status="failed", lease_owner="")
    TrainingJob.objects.filter(pk=deleted.pk).delete()
    default_storage.save("artifacts/checkpoints/notes.txt", ContentFile(b"not a job folder"))

    assert sweep_checkpoints.apply().get() == 3
    assert not any(default_storage.exists(s.key) for s in leaked)
    assert all(default_storage.exists(s.key) for s in kept)
    assert default_storage.exists("artifacts/checkpoints/notes.txt")
    assert services.sweep_orphan_checkpoints() == 0  # nothing left to do: a second run is harmless
