"""One attempt of a job on this host: a scratch folder with everything the engine reads, and the uploads back.

`prepare(job)` makes a fresh scratch folder, fetches the base model (from its package or the artifact store), the
model a "continue training" job starts from, and the job's newest stored checkpoint (so an attempt resumes where any
earlier attempt, on any host, stopped), and builds the engine spec. When the block ends the scratch folder is removed:
what must outlive the attempt is already in the store (`store_checkpoint` for each checkpoint as the engine publishes
it, `store_final` for the final model).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from finetune import artifacts
from models_app.artifacts import base_model_folder, model_folder, store_model_folder
from training import services, specs
from training.engine.artifacts import MANIFEST, ArtifactCorrupt, without_host_paths
from training.engine.checkpoints import PREFIX, checkpoint_problem
from training.engine.spec import TrainingSpec
from training.models import TrainingJob

logger = logging.getLogger(__name__)


@dataclass
class Workspace:
    scratch: Path
    spec: TrainingSpec
    resumed_step: int = 0


@contextlib.contextmanager
def prepare(job: TrainingJob) -> Iterator[Workspace]:
    # Folders an earlier attempt of this job left on this host (its worker was killed) are of no use: the job
    # resumes from the stored checkpoint. The lease is ours, so no other process uses them.
    for stale in Path(settings.TRAINING_RUNS_DIR).glob(f"job-{job.pk}-a*"):
        shutil.rmtree(stale, ignore_errors=True)
    scratch = specs.new_scratch_dir(job)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            base = stack.enter_context(base_model_folder(job.base_model))
            init_from = None
            if job.init_from_job_id:
                produced = getattr(job.init_from_job, "produced_model", None)
                if produced is None:
                    raise FileNotFoundError("the job to continue from produced no model")
                init_from = str(stack.enter_context(model_folder(produced)))
            resumed = fetch_checkpoint(job, scratch)
            spec = specs.build(job, scratch, base_model=base, init_from=init_from)
            yield Workspace(scratch, spec, resumed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fetch_checkpoint(job: TrainingJob, scratch: Path) -> int:
    """Copy the job's newest stored checkpoint into `scratch` (the engine resumes from it); the step, 0 for none.
    One that no longer matches its hash in the store or would not load (a missing or truncated file) is dropped and
    the one before it is used instead (services.drop_damaged_checkpoint says so in the job's log)."""
    key, sha256, step = job.checkpoint_key, job.checkpoint_sha256, job.last_checkpoint_step
    while key:
        folder = scratch / f"{PREFIX}{step}"
        try:
            with artifacts.use(key, sha256, label=f"job {job.pk} checkpoint {step}") as stored:
                shutil.copytree(stored, folder, ignore=shutil.ignore_patterns(MANIFEST))
            problem = checkpoint_problem(folder)
        except ArtifactCorrupt as exc:
            if "does not match" not in str(exc):  # this host's cache thrashing, not a damaged object: retry later
                raise
            problem = "it no longer matches its recorded SHA-256"
        except FileNotFoundError:
            problem = "it is missing from the store"
        if problem is None:
            logger.info("job %s: resuming from the stored checkpoint of step %s", job.pk, step)
            return step
        shutil.rmtree(folder, ignore_errors=True)
        services.drop_damaged_checkpoint(job.pk, key, problem)
        job.refresh_from_db(fields=["checkpoint_key", "checkpoint_sha256", "last_checkpoint_step"])
        key, sha256, step = job.checkpoint_key, job.checkpoint_sha256, job.last_checkpoint_step
    return 0


def store_checkpoint(job_id: int, path: str) -> artifacts.StoredArtifact:
    return artifacts.store_folder(path, services.checkpoint_prefix(job_id))


def store_final(job_id: int, result: dict[str, Any]) -> dict[str, Any]:
    """Upload the final model of a succeeded run; the result to record: the stored artifact instead of host paths."""
    out = without_host_paths(result)
    if result.get("status") == "succeeded" and result.get("model_dir"):
        out["artifact"] = store_model_folder(result["model_dir"], f"artifacts/models/job-{job_id}")
    return out
