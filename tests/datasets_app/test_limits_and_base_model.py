"""Bad input corpus, datasets part of the hardening: a huge line after a valid first line, a gzip whose ISIZE lies, a
Parquet file that decompresses past the limit (plain and gzipped), and a `base_model` that is not a catalogue id the
user may use. Each is refused with a clear message, and the user's other data stays intact."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from datasets_app import base_models, processing, uploads
from datasets_app.models import Dataset
from models_app.models import BaseModel

from .conftest import stored_files

pytestmark = pytest.mark.django_db

KIB = 1024
MIB = 1024 * KIB


def _post(client, name, content):
    return client.post("/api/datasets/", {"file": SimpleUploadedFile(name, content)}, format="multipart")


def _process(pk):
    ds = Dataset.objects.get(pk=pk)
    processing.process_dataset(ds.pk, str(ds.run_token))
    ds.refresh_from_db()
    return ds


def _jsonl(n: int, start: int = 1) -> list[str]:
    return [json.dumps({"instruction": f"question {i}", "output": f"answer {i}"}) for i in range(start, start + n)]


def _random_jsonl(size: int) -> bytes:
    """About ``size`` bytes of barely compressible JSON Lines (so no compression-ratio heuristic can guess it)."""
    lines, total = [], 0
    while total < size:
        line = json.dumps({"instruction": os.urandom(8).hex(), "output": os.urandom(250).hex()})
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def liar_gzip(content: bytes) -> bytes:
    """A valid gzip of ``content`` whose trailing ISIZE says 0 bytes: an empty second member ends the file (the same
    lie as a file past 4 GiB, ISIZE being modulo 2**32)."""
    packed = gzip.compress(content) + gzip.compress(b"")
    assert int.from_bytes(packed[-4:], "little") == 0 and gzip.decompress(packed) == content
    return packed


@pytest.fixture
def kept(auth_client, media_root):
    """A ready dataset of the same user that every refusal below must leave alone."""
    ds = _process(_post(auth_client, "kept.jsonl", ("\n".join(_jsonl(5)) + "\n").encode()).json()["id"])
    assert ds.status == "ready", ds.error
    return ds


def _assert_intact(ds):
    ds.refresh_from_db()
    assert ds.status == "ready" and ds.row_count == 5
    for f in ds.files.all():
        assert default_storage.exists(f.file.name)


# --- a huge line after a valid first line ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_a_huge_line_after_a_valid_first_line_is_refused_at_upload(auth_client, media_root, settings, kept, kind):
    settings.DATASET_MAX_LINE_BYTES = 4 * KIB
    if kind == "jsonl":
        lines = _jsonl(4)
        lines.insert(2, json.dumps({"instruction": "x" * 64 * KIB, "output": "y"}))
    else:
        lines = ["instruction,output", "q1,a1", "x" * 64 * KIB + ",a2", "q3,a3"]
    before = stored_files(media_root)
    r = _post(auth_client, f"big.{kind}", ("\n".join(lines) + "\n").encode())
    assert r.status_code == 400, r.content
    body = r.json()
    assert f"big.{kind}" in body["detail"] and "line 3" in body["detail"] and "4.0 KiB" in body["detail"]
    assert "file" in body["errors"]
    assert Dataset.objects.count() == 1 and stored_files(media_root) == before
    _assert_intact(kept)


def test_a_huge_line_past_the_upload_scan_is_refused_by_processing(
    auth_client, media_root, settings, monkeypatch, kept
):
    """Past what the web process decompresses at upload, the processing task refuses the line, naming it; the
    version's file and the user's other data are kept."""
    settings.DATASET_MAX_LINE_BYTES = 4 * KIB
    monkeypatch.setattr(uploads, "GZIP_SCAN_BYTES", 16 * KIB)
    head = b"\n".join(line.encode() for line in _jsonl(400)) + b"\n"
    assert len(head) > 16 * KIB
    huge = json.dumps({"instruction": "x" * 32 * KIB, "output": "y"}).encode() + b"\n"
    tail = b"\n".join(line.encode() for line in _jsonl(3, start=401)) + b"\n"
    r = _post(auth_client, "late.jsonl.gz", gzip.compress(head + huge + tail))
    assert r.status_code == 201, r.content
    ds = _process(r.json()["id"])
    assert ds.status == "invalid"
    assert "line 401" in ds.error and "longer than 4.0 KiB" in ds.error, ds.error
    assert ds.report["rows_valid"] == 403  # the lines after it were read
    assert all(default_storage.exists(f.file.name) for f in ds.files.all())
    _assert_intact(kept)


# --- a gzip whose ISIZE lies ----------------------------------------------------------------------------------------
def test_a_gzip_whose_isize_lies_is_refused_at_upload(auth_client, media_root, settings, kept):
    settings.DATASET_MAX_DECOMPRESSED_BYTES = 1 * MIB
    before = stored_files(media_root)
    r = _post(auth_client, "liar.jsonl.gz", liar_gzip(_random_jsonl(2 * MIB)))
    assert r.status_code == 400, r.content
    assert "liar.jsonl.gz" in r.json()["detail"] and "more than 1.0 MiB" in r.json()["detail"]
    assert Dataset.objects.count() == 1 and stored_files(media_root) == before
    _assert_intact(kept)


def test_a_gzip_whose_isize_lies_past_the_upload_scan_is_refused_by_processing(
    auth_client, media_root, settings, monkeypatch, kept
):
    settings.DATASET_MAX_DECOMPRESSED_BYTES = 5 * MIB
    monkeypatch.setattr(uploads, "GZIP_SCAN_BYTES", 1 * MIB)
    r = _post(auth_client, "liar.jsonl.gz", liar_gzip(_random_jsonl(6 * MIB)))
    assert r.status_code == 201, r.content
    ds = _process(r.json()["id"])
    assert ds.status == "invalid"
    assert "decompresses to more than 5.0 MiB" in ds.error, ds.error
    _assert_intact(kept)


# --- Parquet decompressing past the limit -------------------------------------------------------------------------
def _parquet(table: pa.Table, **kwargs) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kwargs)
    return buf.getvalue()


def test_a_parquet_file_that_decompresses_past_the_limit_is_refused_at_upload(auth_client, media_root, settings, kept):
    settings.DATASET_MAX_DECOMPRESSED_BYTES = 1 * MIB
    table = pa.table({"instruction": ["q" * 2000] * 2000, "output": ["a"] * 2000})  # ~4 MB of text
    content = _parquet(table, compression="zstd", use_dictionary=False)
    assert len(content) < 256 * KIB
    r = _post(auth_client, "bomb.parquet", content)
    assert r.status_code == 400, r.content
    assert "bomb.parquet" in r.json()["detail"] and "more than 1.0 MiB" in r.json()["detail"]
    assert Dataset.objects.count() == 1
    _assert_intact(kept)


def test_a_gzipped_parquet_file_counts_against_the_same_limit(auth_client, media_root, settings, kept):
    settings.DATASET_MAX_DECOMPRESSED_BYTES = 1 * MIB
    rows = [os.urandom(250).hex() for _ in range(4000)]  # ~2 MB, barely compressible
    content = liar_gzip(_parquet(pa.table({"instruction": rows, "output": rows}), compression="none"))
    r = _post(auth_client, "bomb.parquet.gz", content)
    assert r.status_code == 400, r.content
    assert "more than 1.0 MiB" in r.json()["detail"]
    assert Dataset.objects.count() == 1
    _assert_intact(kept)


def test_a_gzipped_parquet_file_past_the_upload_scan_is_refused_by_processing(
    auth_client, media_root, settings, monkeypatch, kept
):
    settings.DATASET_MAX_DECOMPRESSED_BYTES = 5 * MIB
    monkeypatch.setattr(uploads, "GZIP_SCAN_BYTES", 1 * MIB)
    rows = [os.urandom(250).hex() for _ in range(12000)]  # ~6 MB
    content = liar_gzip(_parquet(pa.table({"instruction": rows, "output": ["a"] * len(rows)}), compression="none"))
    r = _post(auth_client, "late.parquet.gz", content)
    assert r.status_code == 201, r.content
    ds = _process(r.json()["id"])
    assert ds.status == "invalid" and "more than 5.0 MiB" in ds.error, ds.error
    _assert_intact(kept)


# --- base_model: catalogue ids the user may use, nothing else ------------------------------------------------------
@pytest.fixture
def tokenizer_folder(tmp_path):
    """A tokenizer folder with a recognisable name (a copy of the embedded model's tokenizer files)."""
    from training.engine.embedded import embedded_model_path

    source = embedded_model_path()
    folder = tmp_path / "Catalogue-Tokenizer"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if os.path.exists(os.path.join(source, name)):
            shutil.copy(os.path.join(source, name), folder / name)
    return str(folder)


@pytest.fixture
def catalogue(tokenizer_folder):
    """What models_app registers at start-up, done here through the ORM: available rows, gated ones only for the user
    who added them; every row's tokenizer is the folder above, named by the row's repo id."""

    def source(user_id: int, base_model_id: int):
        base = BaseModel.objects.filter(pk=base_model_id, status=BaseModel.Status.AVAILABLE).first()
        if base is None or (base.gated and base.added_by_id != user_id):
            return None
        return base.repo_id, contextlib.nullcontext(tokenizer_folder)

    previous = base_models.register_tokenizer_source(source)
    yield
    base_models.register_tokenizer_source(previous)


@pytest.fixture
def no_catalogue():
    previous = base_models.register_tokenizer_source(None)
    yield
    base_models.register_tokenizer_source(previous)


def _hub_row(**kwargs) -> BaseModel:
    defaults = {"name": "tiny", "source": "hub", "repo_id": f"org/tiny-{BaseModel.objects.count()}"}
    return BaseModel.objects.create(**{**defaults, **kwargs})


@pytest.mark.parametrize(
    "value",
    [
        "gpt2",
        "../../etc",
        "/root/.cache/finetune/models/SmolLM2-135M-Instruct",
        "embedded/SmolLM2-135M-Instruct",
        999_999_999,
        -1,
        2**70,
        "1.5",
        "",
    ],
)
def test_validate_refuses_a_base_model_that_is_not_a_catalogue_id(auth_client, catalogue, kept, value):
    settings_before = dict(kept.validation_settings)
    r = auth_client.post(f"/api/datasets/{kept.pk}/validate/", {"base_model": value}, format="json")
    assert r.status_code == 400, r.content
    assert "base_model" in r.json()["errors"], r.json()
    kept.refresh_from_db()
    assert kept.validation_settings == settings_before and kept.status == "ready"


@pytest.mark.parametrize("value", ["gpt2", "../../etc", "999999999", "-3", "x" * 300])
def test_preview_refuses_a_base_model_that_is_not_a_catalogue_id(auth_client, catalogue, kept, value):
    r = auth_client.get(f"/api/datasets/{kept.pk}/preview/", {"base_model": value})
    assert r.status_code == 400, r.content
    assert "base_model" in r.json()["errors"] and "base model" in r.json()["detail"].lower()


def test_another_users_gated_catalogue_entry_is_refused(auth_client, catalogue, kept, other_user):
    private = _hub_row(gated=True, added_by=other_user)
    r = auth_client.post(f"/api/datasets/{kept.pk}/validate/", {"base_model": private.pk}, format="json")
    assert r.status_code == 400 and "base_model" in r.json()["errors"]
    r = auth_client.get(f"/api/datasets/{kept.pk}/preview/", {"base_model": private.pk})
    assert r.status_code == 400 and "base_model" in r.json()["errors"]


def test_a_catalogue_id_the_user_may_use_picks_its_tokenizer(auth_client, catalogue, kept, user):
    mine = _hub_row(gated=True, added_by=user)
    r = auth_client.post(f"/api/datasets/{kept.pk}/validate/", {"base_model": mine.pk}, format="json")
    assert r.status_code == 202, r.content
    assert r.json()["validation_settings"]["base_model"] == mine.pk
    ds = _process(kept.pk)
    assert ds.status == "ready", ds.error
    assert ds.report["tokens"]["tokenizer"] == mine.repo_id
    r = auth_client.get(f"/api/datasets/{kept.pk}/preview/", {"base_model": str(mine.pk), "limit": 2})
    assert r.status_code == 200, r.content
    assert len(r.json()["results"]) == 2


def test_a_base_model_withdrawn_before_processing_fails_the_version_clearly(auth_client, catalogue, kept, user):
    mine = _hub_row()
    assert (
        auth_client.post(f"/api/datasets/{kept.pk}/validate/", {"base_model": mine.pk}, format="json").status_code
        == 202
    )
    BaseModel.objects.filter(pk=mine.pk).update(status=BaseModel.Status.FAILED)
    ds = _process(kept.pk)
    assert ds.status == "invalid" and "base model" in ds.error.lower() and str(mine.pk) in ds.error, ds.error
    assert auth_client.get(f"/api/datasets/{kept.pk}/preview/").status_code == 400


def test_without_a_registered_catalogue_no_base_model_is_accepted(auth_client, no_catalogue, kept):
    row = _hub_row()
    r = auth_client.post(f"/api/datasets/{kept.pk}/validate/", {"base_model": row.pk}, format="json")
    assert r.status_code == 400 and "base_model" in r.json()["errors"]
    # No base model: the embedded default still works.
    assert (
        auth_client.post(f"/api/datasets/{kept.pk}/validate/", {"max_length": 512}, format="json").status_code == 202
    )
    assert _process(kept.pk).status == "ready"


def test_a_free_string_stored_before_the_check_never_reaches_the_tokenizer_loader(
    auth_client, catalogue, kept, monkeypatch
):
    from datasets_app.validation import tokenizer_cache

    loaded: list[str] = []
    real = tokenizer_cache.resolve_tokenizer_path
    monkeypatch.setattr(tokenizer_cache, "resolve_tokenizer_path", lambda path: loaded.append(str(path)) or real(path))
    Dataset.objects.filter(pk=kept.pk).update(validation_settings={"base_model": "someone/private-model"})
    kept.refresh_from_db()
    r = auth_client.get(f"/api/datasets/{kept.pk}/preview/")
    assert r.status_code == 400 and "base_model" in r.json()["errors"]
    Dataset.objects.filter(pk=kept.pk).update(status="uploaded")
    ds = _process(kept.pk)
    assert ds.status == "invalid" and "no longer available" in ds.error
    assert not any("private-model" in p for p in loaded), loaded
    # Re-validating without a choice drops the stored string: the embedded default again.
    assert auth_client.post(f"/api/datasets/{kept.pk}/validate/", {}, format="json").status_code == 202
    ds = _process(kept.pk)
    assert ds.status == "ready" and "base_model" not in ds.validation_settings
