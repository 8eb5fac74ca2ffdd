from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets_app.models import Dataset, DatasetFile
from models_app.models import BaseModel
from tests.datasets_dir import DATASETS

SHARED = DATASETS

TINY_HYPER = {"max_steps": 6, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "max_length": 128,
              "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 2, "eval_steps": 3, "lora_r": 8,
              "lora_alpha": 16, "warmup_ratio": 0.0, "seed": 7}


def make_ready_dataset(owner, *, rows=None, fmt="alpaca", name="tiny alpaca", tmp_dir: Path) -> Dataset:
    """A ready dataset from the shared Alpaca file (first rows), stored like an upload would store it."""
    from django.core.files import File

    if rows is None:
        # Four short real rows: a few steps then cycle over the same examples, so the loss clearly falls.
        first = json.load(open(SHARED / "alpaca_en_demo.json"))[:60]
        rows = sorted(first, key=lambda r: len(r["instruction"]) + len(r["input"]) + len(r["output"]))[:4]
    data = rows
    path = tmp_dir / f"{name.replace(' ', '_')}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    ds = Dataset.objects.create(owner=owner, name=name, status=Dataset.Status.READY, format=fmt,
                                row_count=len(data), verdict="ok",
                                report={"rows": len(data), "rows_valid": len(data), "tokens": {"mean": 120}})
    df = DatasetFile(dataset=ds, role="source", kind="jsonl", original_filename=path.name,
                     size_bytes=path.stat().st_size, sha256="0" * 64)
    with open(path, "rb") as fh:
        df.file.save("upload", File(fh), save=False)
    df.save()
    return ds


@pytest.fixture
def embedded_base(db):
    return BaseModel.objects.ensure_embedded()


@pytest.fixture
def ready_dataset(user, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    return make_ready_dataset(user, tmp_dir=tmp_path)


@pytest.fixture(scope="module")
def training_worker(test_db_name, daphne_url, tmp_path_factory):
    """A `training` queue worker for this module; Modal runs go to the subprocess stand-in and call back to daphne."""
    from tests.processes import server_env, start_celery_worker, stop

    runs = tmp_path_factory.mktemp("modal-runs")
    env = server_env(test_db_name, MODAL_CLIENT="tests.fakes.modal.SubprocessModalClient", SITE_URL=daphne_url,
                     MODAL_RUNS_DIR=str(runs))
    proc, node = start_celery_worker(env, tmp_path_factory.mktemp("tw") / "worker.log", queues="training")
    yield node
    stop(proc)
