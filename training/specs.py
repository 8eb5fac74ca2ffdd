"""The one place ORM rows become the engine's TrainingSpec."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from datasets_app.models import DatasetFile
from training.engine.spec import DataSpec, HyperParams, TrainingSpec

from .models import TrainingJob


def run_dir(job: TrainingJob) -> Path:
    """The job's run folder (checkpoints, final model, exports), named once and kept for every attempt so a retry
    resumes there; the random part means a folder left by a deleted job (or a reset database) is never reused."""
    if not job.output_dir:
        import uuid

        name = str(Path(settings.TRAINING_RUNS_DIR) / f"job-{job.pk}-{uuid.uuid4().hex[:8]}")
        TrainingJob.objects.filter(pk=job.pk, output_dir="").update(output_dir=name)
        job.output_dir = TrainingJob.objects.values_list("output_dir", flat=True).get(pk=job.pk)
    return Path(job.output_dir)


def _local_path(f: DatasetFile, into: Path) -> str:
    try:
        return f.file.path
    except NotImplementedError:  # remote storage: copy once into the run folder
        import shutil

        into.mkdir(parents=True, exist_ok=True)
        target = into / f"{f.pk}-{Path(f.file.name).name}"
        if not target.exists():
            tmp = target.with_suffix(target.suffix + ".part")
            with f.file.open("rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            tmp.rename(target)
        return str(target)


def base_model_ref(job: TrainingJob) -> str:
    base = job.base_model
    return base.local_path or base.repo_id


def build(job: TrainingJob) -> TrainingSpec:
    """The engine spec for a job (paths are local to the machine that runs it)."""
    out = run_dir(job)
    files = list(job.dataset.files.all())
    train = [_local_path(f, out / "data") for f in files if f.role in (DatasetFile.Role.SOURCE, DatasetFile.Role.TRAIN)]
    evals = [_local_path(f, out / "data") for f in files if f.role == DatasetFile.Role.VALIDATION]
    data = DataSpec(train_files=tuple(train), format=job.dataset.format or None,
                    column_mapping=job.dataset.column_mapping, eval_files=tuple(evals))
    init_from = None
    if job.init_from_job_id:
        produced = getattr(job.init_from_job, "produced_model", None)
        init_from = produced.model_dir if produced else None
    return TrainingSpec(
        job_id=str(job.pk), base_model=base_model_ref(job), data=data, output_dir=str(out), method=job.method,
        weights=job.weights, hyper=HyperParams.from_dict(job.hyperparameters), resume=True, init_from=init_from,
    )
