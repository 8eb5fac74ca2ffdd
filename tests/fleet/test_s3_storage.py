"""The artifact store and downloads on S3 (moto's S3 server): what a fleet with a bucket and no shared disk relies on."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import requests
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from finetune import artifacts
from tests.datasets_dir import DATASETS
from training.engine.artifacts import ArtifactCache, ArtifactCorrupt

pytestmark = [pytest.mark.django_db, pytest.mark.fleet]
ALPACA = DATASETS / "alpaca_en_demo.json"


def test_a_folder_stored_in_the_bucket_is_fetched_by_key_and_hash_on_another_host(s3_storage, tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 4096)
    stored = artifacts.store_folder(folder, "artifacts/models/test")
    assert stored.key == f"artifacts/models/test/{stored.sha256}.tar"
    assert s3_storage.keys("artifacts/models/test/") == {stored.key: stored.size}
    assert artifacts.store_folder(folder, "artifacts/models/test") == stored  # same bytes, same object, no upload

    shutil.rmtree(folder)  # "another host": nothing of the folder is left here
    other_host = ArtifactCache(tmp_path / "host-b-cache", 1 << 30)
    with other_host.use(stored.sha256, lambda: default_storage.open(stored.key, "rb")) as path:
        assert (path / "adapter_config.json").read_text() == '{"r": 8}'
        assert (path / "sub" / "weights.bin").read_bytes() == bytes(range(256)) * 4096
    assert other_host.downloads == 1

    # An object replaced in the bucket (other bytes under the same key) is refused by its hash.
    s3_storage.client().put_object(Bucket=s3_storage.bucket, Key=stored.key, Body=b"not the model")
    with pytest.raises(ArtifactCorrupt):
        with ArtifactCache(tmp_path / "host-c-cache", 1 << 30).use(
            stored.sha256, lambda: default_storage.open(stored.key, "rb")
        ):
            pass


def test_dataset_download_redirects_to_a_presigned_url_of_the_bucket(s3_storage, auth_client):
    with open(ALPACA, "rb") as fh:
        r = auth_client.post("/api/datasets/", {"file": fh}, format="multipart")
    assert r.status_code == 201, r.content
    stored = r.json()["files"][0]
    r = auth_client.get(f"/api/datasets/{r.json()['id']}/download/")
    assert r.status_code == 302
    url = r["Location"]
    assert url.startswith(s3_storage.url) and "Signature" in url and "Expires" in url
    got = requests.get(url, timeout=30)
    assert got.status_code == 200 and got.content == ALPACA.read_bytes()
    assert hashlib.sha256(got.content).hexdigest() == stored["sha256"]
    assert 'attachment; filename="alpaca_en_demo.json"' in got.headers["Content-Disposition"]


def test_export_download_link_redirects_to_the_bucket(s3_storage, auth_client, user):
    from models_app.models import BaseModel, FineTunedModel, ModelExport, TaskStatus

    model = FineTunedModel.objects.create(
        owner=user,
        name="tiny",
        version=1,
        base_model=BaseModel.objects.ensure_embedded(),
        method="sft",
        weights="lora",
    )
    body = b"GGUF" + bytes(1000)
    key = default_storage.save(f"exports/{user.pk}/tiny.gguf", ContentFile(body))
    export = ModelExport.objects.create(
        owner=user,
        model=model,
        format="gguf",
        quantization="q8_0",
        status=TaskStatus.SUCCEEDED,
        file_key=key,
        size_bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    link = auth_client.get(f"/api/models/exports/{export.pk}/download/").json()["url"]
    r = auth_client.get(link)
    assert r.status_code == 302 and r["Location"].startswith(s3_storage.url)
    got = requests.get(r["Location"], timeout=30)
    assert got.status_code == 200 and got.content == body
    assert "tiny-v1-Q8_0.gguf" in got.headers["Content-Disposition"]


def test_the_checkpoint_sweep_lists_job_folders_in_the_bucket(s3_storage):
    """The sweep finds job folders by a delimited listing of the bucket (no disk to walk): a succeeded job's leaked
    checkpoint goes, a running job's stays."""
    from tests.factories import TrainingJobFactory
    from training import services

    for key in s3_storage.keys("artifacts/checkpoints/"):  # the bucket is shared by the session's S3 tests
        default_storage.delete(key)
    done, running = TrainingJobFactory(status="succeeded"), TrainingJobFactory(status="running", lease_owner="w1")
    leaked = default_storage.save(f"artifacts/checkpoints/job-{done.pk}/a.tar", ContentFile(b"tar"))
    kept = default_storage.save(f"artifacts/checkpoints/job-{running.pk}/b.tar", ContentFile(b"tar"))
    assert artifacts.folders_under("artifacts/checkpoints") == sorted([f"job-{done.pk}", f"job-{running.pk}"])
    assert services.sweep_orphan_checkpoints() == 1
    assert set(s3_storage.keys("artifacts/checkpoints/")) == {kept}
    assert leaked not in s3_storage.keys()
