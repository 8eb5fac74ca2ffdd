"""KTO data over the API: a file of answers labelled desirable or not (half undesirable, made from real HH-RLHF pairs)
is detected as its own format with the balance in its statistics; SFT on it is refused with the way forward; the
"keep only desirable rows" step makes an SFT version; KTO jobs and DPO's loss_type are accepted."""

from __future__ import annotations

import gzip
import json

import pytest

from datasets_app import processing
from datasets_app.models import Dataset
from models_app.models import BaseModel
from tests.datasets_dir import DATASETS
from tests.factories import TINY_HYPER
from training.engine.data import split_hh_transcript

pytestmark = pytest.mark.django_db


def _process(dataset_id: int) -> Dataset:
    ds = Dataset.objects.get(pk=dataset_id)
    processing.process_dataset(ds.pk, str(ds.run_token))
    ds.refresh_from_db()
    return ds


@pytest.fixture
def kto_dataset(auth_client, media_root, tmp_path) -> Dataset:
    """20 labelled answers: each HH-RLHF pair's chosen answer desirable, its rejected one undesirable."""
    rows = []
    with gzip.open(DATASETS / "hh_rlhf_harmless_test.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            pair = json.loads(line)
            chosen, rejected = split_hh_transcript(pair["chosen"]), split_hh_transcript(pair["rejected"])
            if len(chosen) != 2 or len(rejected) != 2 or not chosen[1]["content"] or not rejected[1]["content"]:
                continue
            rows += [{"messages": chosen, "label": True}, {"messages": rejected, "label": False}]
            if len(rows) == 20:
                break
    path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(path, "rb") as fh:
        created = auth_client.post("/api/datasets/", {"file": fh}, format="multipart")
    assert created.status_code == 201, created.content
    return _process(created.json()["id"])


def _job(ds: Dataset, method: str, **hyper) -> dict:
    base = BaseModel.objects.ensure_embedded()
    return {
        "name": "kto",
        "base_model": base.pk,
        "dataset": ds.pk,
        "method": method,
        "weights": "lora",
        "hyperparameters": {**TINY_HYPER, **hyper},
    }


def test_kto_data_is_detected_with_its_balance_and_sft_on_it_is_refused(auth_client, kto_dataset):
    ds = kto_dataset
    assert ds.status == "ready" and ds.format == "kto" and ds.row_count == 20, ds.error
    labels = auth_client.get(f"/api/datasets/{ds.pk}/report/").json()["statistics"]["labels"]
    assert labels == {"desirable": 10, "undesirable": 10, "desirable_share": 0.5}

    refused = auth_client.post("/api/training/jobs/", _job(ds, "sft"), format="json")
    assert refused.status_code == 400 and refused.json()["errors"]["method"]
    detail = refused.json()["detail"]
    assert "KTO data" in detail and "(10 of 20 rows are undesirable)" in detail
    assert "'Keep only desirable rows' (keep_desirable)" in detail
    assert "KTO data" in auth_client.post("/api/training/jobs/", _job(ds, "dpo"), format="json").json()["detail"]

    kto = auth_client.post("/api/training/jobs/", _job(ds, "kto", per_device_train_batch_size=2), format="json")
    assert kto.status_code == 201, kto.content
    assert kto.json()["method"] == "kto"


def test_keep_desirable_rows_makes_an_sft_version(auth_client, kto_dataset):
    r = auth_client.post(
        f"/api/datasets/{kto_dataset.pk}/preprocess/", {"steps": [{"op": "keep_desirable"}]}, format="json"
    )
    assert r.status_code == 202, r.content
    child = _process(r.json()["id"])
    assert child.status == "ready", child.error
    assert child.format == "messages" and child.row_count == 10 and child.version == 2
    sft = auth_client.post("/api/training/jobs/", _job(child, "sft"), format="json")
    assert sft.status_code == 201, sft.content
    wrong = auth_client.post(
        f"/api/datasets/{child.pk}/preprocess/", {"steps": [{"op": "keep_desirable"}]}, format="json"
    )
    assert wrong.status_code == 202  # the step's fit to the data is checked when the version is made
    failed = _process(wrong.json()["id"])
    assert failed.status != "ready" and "keeping desirable rows needs KTO data" in failed.error, failed.error


def test_dpo_loss_type_is_accepted_and_checked_per_method(auth_client, user, tmp_path, settings):
    from tests.factories import make_ready_dataset

    settings.MEDIA_ROOT = tmp_path / "media"
    pairs = make_ready_dataset(
        user, rows=[{"prompt": "Q", "chosen": "Good.", "rejected": "Bad."}] * 4, fmt="preference"
    )
    ok = auth_client.post("/api/training/jobs/", _job(pairs, "dpo", loss_type="ipo"), format="json")
    assert ok.status_code == 201, ok.content
    assert ok.json()["hyperparameters"]["loss_type"] == "ipo"
    bad = auth_client.post("/api/training/jobs/", _job(pairs, "dpo", loss_type="kto"), format="json")
    assert bad.status_code == 400 and "loss_type 'kto' does not apply to dpo" in bad.json()["detail"]
