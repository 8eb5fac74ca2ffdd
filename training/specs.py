"""The one place ORM rows become the engine's TrainingSpec."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from django.conf import settings

from datasets_app.models import DatasetFile
from training.engine.spec import DataSpec, HyperParams, TrainingSpec

from .models import TrainingJob


def new_scratch_dir(job: TrainingJob) -> Path:
    """A fresh local folder for one attempt of the job on this host (checkpoints and the final model are written
    here, uploaded to the artifact store, and the folder is removed when the attempt ends)."""
    return Path(settings.TRAINING_RUNS_DIR) / f"job-{job.pk}-a{job.attempts}-{uuid.uuid4().hex[:8]}"


def _local_path(f: DatasetFile, into: Path) -> str:
    try:
        return f.file.path
    except NotImplementedError:  # remote storage: copy once into the scratch folder
        into.mkdir(parents=True, exist_ok=True)
        target = into / f"{f.pk}-{Path(f.file.name).name}"
        if not target.exists():
            tmp = target.with_suffix(target.suffix + ".part")
            with f.file.open("rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            tmp.rename(target)
        return str(target)


def remote_file_name(f: DatasetFile) -> str:
    """The name a remote run gives a dataset file it downloads (role and kind kept for the loader)."""
    return f"{f.pk}-{f.role}.{f.kind}" + (".gz" if f.compressed else "")


def build(
    job: TrainingJob, out: Path, *, base_model: str, init_from: str | None = None, remote: bool = False
) -> TrainingSpec:
    """The engine spec for a job, with paths local to the machine that runs it: `out` its scratch folder,
    `base_model` what the engine loads (a folder here, or an id it resolves), `init_from` the model to continue.
    `remote=True` names the data files as a remote run will after downloading them (relative to its data folder)."""
    files = list(job.dataset.files.all())
    place = remote_file_name if remote else (lambda f: _local_path(f, out / "data"))
    train = [place(f) for f in files if f.role in (DatasetFile.Role.SOURCE, DatasetFile.Role.TRAIN)]
    evals = [place(f) for f in files if f.role == DatasetFile.Role.VALIDATION]
    if job.eval_dataset_id is not None:  # the user's evaluation dataset: all of its rows are held out
        evals = [place(f) for f in job.eval_dataset.files.all()]
    data = DataSpec(
        train_files=tuple(train),
        format=job.dataset.format or None,
        column_mapping=job.dataset.column_mapping,
        eval_files=tuple(evals),
    )
    return TrainingSpec(
        job_id=str(job.pk),
        base_model=base_model,
        data=data,
        output_dir=str(out),
        method=job.method,
        weights=job.weights,
        hyper=HyperParams.from_dict(job.hyperparameters),
        resume=True,
        init_from=init_from,
        compare_prompts=job.compare_prompts,
    )
