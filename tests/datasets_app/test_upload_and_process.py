"""Uploading the shared real datasets over the API, processing them, and reading report, preview, statistics."""

from __future__ import annotations

import gzip
import json

import pytest

from datasets_app import processing
from datasets_app.models import Dataset

from .conftest import stored_files

pytestmark = pytest.mark.django_db


def _upload(client, path, **extra):
    with open(path, "rb") as fh:
        return client.post("/api/datasets/", {"file": fh, **extra}, format="multipart")


def _process(dataset_id):
    ds = Dataset.objects.get(pk=dataset_id)
    processing.process_dataset(ds.pk, str(ds.run_token))
    ds.refresh_from_db()
    return ds


@pytest.mark.parametrize(
    ("filename", "fmt", "rows"),
    [
        ("alpaca_en_demo.json", "alpaca", lambda p: len(json.load(open(p)))),
        ("sharegpt_conversations.json", "sharegpt", lambda p: len(json.load(open(p)))),
        ("hh_rlhf_harmless_test.jsonl.gz", "hh_rlhf", lambda p: sum(1 for line in gzip.open(p) if line.strip())),
    ],
)
def test_shared_file_uploads_is_detected_and_validated(
    auth_client, user, media_root, shared_datasets, filename, fmt, rows
):
    path = shared_datasets / filename
    r = _upload(auth_client, path)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["status"] == "uploaded" and body["original_filename"] == filename
    assert body["files"][0]["size_bytes"] == path.stat().st_size
    # The storage key is the server's, not the user's file name.
    (stored,) = stored_files(media_root)
    assert filename not in str(stored) and f"datasets/{user.pk}/" in str(stored)
    ds = _process(body["id"])
    assert ds.status == "ready", ds.error
    assert ds.format == fmt
    expected = rows(path)
    report = auth_client.get(f"/api/datasets/{ds.pk}/report/").json()
    assert report["rows"] == expected
    assert ds.row_count == report["rows_valid"] <= expected
    assert sum(b["count"] for b in report["tokens"]["histogram"]) == report["rows_valid"]
    detail = auth_client.get(f"/api/datasets/{ds.pk}/").json()
    assert detail["status"] == "ready" and detail["verdict"] in ("ok", "warnings")


def test_nested_self_instruct_file_needs_and_accepts_a_column_mapping(auth_client, media_root, shared_datasets):
    path = shared_datasets / "self_instruct_seed_tasks.jsonl"
    body = _upload(auth_client, path).json()
    ds = _process(body["id"])
    assert ds.status == "invalid"
    assert "instances" in ds.error or "column" in ds.error.lower()
    mapping = {"instruction": "instruction", "input": "instances.0.input", "output": "instances.0.output"}
    r = auth_client.patch(f"/api/datasets/{ds.pk}/", {"format": "alpaca", "column_mapping": mapping}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "uploaded"
    ds = _process(ds.pk)
    assert ds.status == "ready", ds.error
    assert ds.format == "alpaca"
    assert ds.row_count == sum(1 for line in open(path) if line.strip()) == 175


def test_preview_marks_the_trained_assistant_tokens(auth_client, media_root, shared_datasets):
    ds = _process(_upload(auth_client, shared_datasets / "alpaca_en_demo.json").json()["id"])
    r = auth_client.get(f"/api/datasets/{ds.pk}/preview/?offset=2&limit=3")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 999 and body["offset"] == 2 and len(body["results"]) == 3
    first = json.load(open(shared_datasets / "alpaca_en_demo.json"))[2]
    row = body["results"][0]
    trained = "".join(seg["text"] for seg in row["segments"] if seg["trained"])
    assert first["output"].strip()[:40] in trained and "<|im_end|>" in trained
    context = "".join(seg["text"] for seg in row["segments"] if not seg["trained"])
    assert first["instruction"][:30] in context and "<|im_start|>assistant" in context


def test_statistics_and_versions(auth_client, media_root, shared_datasets):
    ds = _process(_upload(auth_client, shared_datasets / "sharegpt_conversations.json").json()["id"])
    stats = auth_client.get(f"/api/datasets/{ds.pk}/statistics/").json()
    assert stats["rows"] == 500 and stats["roles"]["assistant"] > 0
    versions = auth_client.get(f"/api/datasets/{ds.pk}/versions/").json()
    assert [v["version"] for v in versions] == [1]


def test_split_creates_a_new_version_and_keeps_the_original(auth_client, media_root, shared_datasets):
    ds = _process(_upload(auth_client, shared_datasets / "alpaca_en_demo.json").json()["id"])
    r = auth_client.post(f"/api/datasets/{ds.pk}/split/", {"validation_ratio": 0.1, "seed": 7}, format="json")
    assert r.status_code == 202, r.content
    child = _process(r.json()["id"])
    assert child.status == "ready", child.error
    assert child.version == 2 and child.parent_id == ds.pk
    roles = sorted(child.files.values_list("role", flat=True))
    assert roles == ["train", "validation"]
    result = child.operation["result"]
    assert result["train_rows"] + result["validation_rows"] == 999
    assert 90 <= result["validation_rows"] <= 110
    assert [v["version"] for v in auth_client.get(f"/api/datasets/{ds.pk}/versions/").json()] == [1, 2]
    ds.refresh_from_db()
    assert ds.status == "ready" and ds.files.count() == 1


def test_preprocess_dedupes_into_a_new_version(auth_client, media_root, tmp_path):
    rows = [{"instruction": "Say hi", "input": "", "output": "Hi!"}] * 3 + [
        {"instruction": "Say bye", "input": "", "output": "Bye! Mail me at ada@example.com"}
    ]
    path = tmp_path / "dups.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = _process(_upload(auth_client, path).json()["id"])
    assert ds.report["duplicates"]["exact"] == 2
    r = auth_client.post(
        f"/api/datasets/{ds.pk}/preprocess/",
        {"steps": [{"op": "dedupe", "mode": "exact"}, {"op": "redact_pii"}]},
        format="json",
    )
    assert r.status_code == 202, r.content
    child = _process(r.json()["id"])
    assert child.status == "ready", child.error
    assert child.row_count == 2
    assert child.report["duplicates"]["exact"] == 0
    assert child.report["pii"]["email"]["count"] == 0


def test_bad_preprocess_step_is_named(auth_client, media_root, shared_datasets):
    ds = _process(_upload(auth_client, shared_datasets / "alpaca_en_demo.json").json()["id"])
    r = auth_client.post(f"/api/datasets/{ds.pk}/preprocess/", {"steps": [{"op": "shuffle_words"}]}, format="json")
    assert r.status_code == 400 and "shuffle_words" in r.json()["detail"]


def test_download_returns_the_original_bytes(auth_client, media_root, shared_datasets):
    path = shared_datasets / "alpaca_en_demo.json"
    body = _upload(auth_client, path).json()
    r = auth_client.get(f"/api/datasets/{body['id']}/download/")
    assert r.status_code == 200
    assert b"".join(r.streaming_content) == path.read_bytes()
    assert "alpaca_en_demo.json" in r["Content-Disposition"]


def test_delete_removes_files_from_storage(
    auth_client, media_root, shared_datasets, django_capture_on_commit_callbacks
):
    body = _upload(auth_client, shared_datasets / "alpaca_en_demo.json").json()
    assert len(stored_files(media_root)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.delete(f"/api/datasets/{body['id']}/").status_code == 204
    assert stored_files(media_root) == []
    assert not Dataset.objects.filter(pk=body["id"]).exists()


def test_a_version_a_training_job_used_is_kept_with_a_409(auth_client, user, media_root):
    """Not a 500 (the job's foreign key protects the row): a plain refusal naming the job, nothing deleted."""
    from tests.factories import TrainingJobFactory

    job = TrainingJobFactory(owner=user)
    r = auth_client.delete(f"/api/datasets/{job.dataset_id}/")
    assert r.status_code == 409, r.content
    assert f"training job #{job.pk}" in r.json()["detail"]
    assert Dataset.objects.filter(pk=job.dataset_id).exists() and len(stored_files(media_root)) == 1


def test_report_before_processing_is_409(auth_client, media_root, shared_datasets):
    body = _upload(auth_client, shared_datasets / "alpaca_en_demo.json").json()
    r = auth_client.get(f"/api/datasets/{body['id']}/report/")
    assert r.status_code == 409 and "being processed" in r.json()["detail"]


def test_second_delivery_of_processing_is_a_noop(auth_client, media_root, shared_datasets):
    body = _upload(auth_client, shared_datasets / "alpaca_en_demo.json").json()
    ds = Dataset.objects.get(pk=body["id"])
    token = str(ds.run_token)
    processing.process_dataset(ds.pk, token)
    ds.refresh_from_db()
    updated = ds.updated
    processing.process_dataset(ds.pk, token)  # redelivered message
    ds.refresh_from_db()
    assert ds.updated == updated and ds.status == "ready"
