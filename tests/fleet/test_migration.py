"""Rows that named folders on a host before the artifact store (models_app 0006, training 0004): the migration packs
the folders it finds into the store and records keys and hashes; a folder that is not there leaves the row without
files (the UI says so) instead of failing the migration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.fleet]
BEFORE = [
    ("models_app", "0005_finetunedmodel_finetune_owner_created"),
    ("training", "0003_trainingjob_job_owner_created_and_more"),
]
AFTER = [("models_app", "0006_artifact_store"), ("training", "0004_artifact_store")]


def test_existing_model_and_checkpoint_folders_move_into_the_artifact_store(tmp_path: Path) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps
        from accounts.models import User  # apps not migrated back: their current models
        from datasets_app.models import Dataset

        Base = old.get_model("models_app", "BaseModel")
        Model, Job = old.get_model("models_app", "FineTunedModel"), old.get_model("training", "TrainingJob")
        owner = User.objects.create_user(username="legacy", email="legacy@example.com", password="x-Strong-pass-1")
        base = Base.objects.create(name="embedded", source="embedded", repo_id="embedded/legacy-test")
        final = tmp_path / "run" / "final"
        final.mkdir(parents=True)
        (final / "adapter_config.json").write_text(json.dumps({"r": 8}))
        (final / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
        kept = Model.objects.create(
            owner_id=owner.pk,
            name="kept",
            version=1,
            base_model=base,
            method="sft",
            weights="lora",
            model_dir=str(final),
        )
        lost = Model.objects.create(
            owner_id=owner.pk,
            name="lost",
            version=1,
            base_model=base,
            method="sft",
            weights="lora",
            model_dir=str(tmp_path / "gone" / "final"),
        )
        checkpoint = tmp_path / "run" / "checkpoint-4"
        checkpoint.mkdir()
        (checkpoint / "adapter_model.safetensors").write_bytes(b"\1" * 2048)
        (checkpoint / "checkpoint-complete.json").write_text(json.dumps({"step": 4}))
        dataset = Dataset.objects.create(owner=owner, name="d")
        job = Job.objects.create(
            owner_id=owner.pk,
            name="j",
            base_model=base,
            dataset_id=dataset.pk,
            method="sft",
            weights="lora",
            status="failed",
            output_dir=str(tmp_path / "run"),
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    from models_app.artifacts import model_folder
    from models_app.models import FineTunedModel
    from training.models import TrainingJob

    kept, lost = FineTunedModel.objects.get(pk=kept.pk), FineTunedModel.objects.get(pk=lost.pk)
    assert kept.artifact_key.startswith(f"artifacts/models/model-{kept.pk}/") and kept.is_adapter
    assert default_storage.size(kept.artifact_key) == kept.artifact_size > 0
    shutil.rmtree(final)  # the host folder is no longer needed
    with model_folder(kept) as folder:
        assert (folder / "adapter_model.safetensors").read_bytes() == b"\0" * 4096
    assert lost.artifact_key == "" and lost.artifact_sha256 == ""
    job = TrainingJob.objects.get(pk=job.pk)
    assert job.checkpoint_key.startswith(f"artifacts/checkpoints/job-{job.pk}/") and job.last_checkpoint_step == 4
    default_storage.delete(kept.artifact_key)
    default_storage.delete(job.checkpoint_key)
