"""The bad-input corpus: each upload is answered with a clear 4xx and nothing is left half-stored."""

from __future__ import annotations

import gzip
import io
import json
import os
import threading

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile

from datasets_app.models import Dataset

from .conftest import stored_files

pytestmark = pytest.mark.django_db


def _post(client, name, content, **extra):
    f = SimpleUploadedFile(name, content)
    return client.post("/api/datasets/", {"file": f, **extra}, format="multipart")


def _assert_refused(r, code, *needles, media_root=None):
    assert r.status_code == code, r.content
    body = r.json()
    assert set(body) == {"detail", "errors"}
    for n in needles:
        assert n.lower() in body["detail"].lower(), body["detail"]
    assert Dataset.objects.count() == 0
    if media_root is not None:
        assert stored_files(media_root) == []


def _parquet_bytes() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"instruction": ["a"], "output": ["b"]}), buf)
    return buf.getvalue()


def test_content_lying_about_its_type(auth_client, media_root):
    _assert_refused(
        _post(auth_client, "data.csv", _parquet_bytes()), 400, "data.csv", "parquet", media_root=media_root
    )
    _assert_refused(
        _post(auth_client, "data.parquet", b'{"instruction": "a", "output": "b"}\n'),
        400,
        "data.parquet",
        media_root=media_root,
    )


def test_binary_garbage(auth_client, media_root):
    _assert_refused(_post(auth_client, "garbage.jsonl", os.urandom(4096)), 400, "garbage.jsonl", media_root=media_root)


def test_json_broken_at_line_n_names_the_line(auth_client, media_root):
    lines = [json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(6)]
    lines[3] = '{"instruction": "q3", "output": "a3"'  # line 4 is cut short
    r = _post(auth_client, "broken.jsonl", ("\n".join(lines) + "\n").encode())
    _assert_refused(r, 400, "line 4", media_root=media_root)


def test_csv_with_ragged_rows(auth_client, media_root):
    content = b"instruction,output\nq1,a1\nq2,a2,extra,cells\nq3,a3\n"
    _assert_refused(_post(auth_client, "ragged.csv", content), 400, "ragged.csv", "line 3", media_root=media_root)


def test_empty_file(auth_client, media_root):
    _assert_refused(_post(auth_client, "empty.jsonl", b""), 400, "empty", media_root=media_root)


def test_unsupported_extension(auth_client, media_root):
    _assert_refused(_post(auth_client, "notes.txt", b"hello"), 400, "unsupported", media_root=media_root)


def test_over_size_upload_is_413(auth_client, media_root, settings):
    settings.DATASET_MAX_UPLOAD_BYTES = 100_000
    content = b"".join(json.dumps({"instruction": "q" * 50, "output": "a" * 50}).encode() + b"\n" for _ in range(2000))
    _assert_refused(_post(auth_client, "big.jsonl", content), 413, "largest upload allowed", media_root=media_root)


def test_gzip_bomb(auth_client, media_root, settings):
    settings.DATASET_MAX_DECOMPRESSED_BYTES = 10 * 1024**2
    bomb = gzip.compress(b"\n" * (200 * 1024**2), compresslevel=9)  # ~200 KB expanding to 200 MB
    assert len(bomb) < 1024**2
    r = _post(auth_client, "bomb.jsonl.gz", bomb)
    assert r.status_code == 400, r.content
    assert Dataset.objects.count() == 0 and stored_files(media_root) == []


def test_single_50_mb_line(auth_client, media_root):
    line = b'{"instruction": "' + b"x" * (50 * 1024**2) + b'", "output": "y"}\n'
    _assert_refused(_post(auth_client, "oneline.jsonl", line), 400, "line 1", media_root=media_root)


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd.jsonl", "..\\..\\evil.jsonl", "nul\x00byte.jsonl", "invoice\u202egnp.jsonl"],
    ids=["traversal", "windows-traversal", "nul", "rtl-override"],
)
def test_dangerous_file_names(auth_client, media_root, name):
    body = (
        b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="' + name.encode() + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        b'{"instruction": "a", "output": "b"}\n\r\n--BOUNDARY--\r\n'
    )
    r = auth_client.generic("POST", "/api/datasets/", body, content_type="multipart/form-data; boundary=BOUNDARY")
    assert r.status_code == 400, r.content
    assert "file name" in r.json()["detail"]
    assert Dataset.objects.count() == 0 and stored_files(media_root) == []


def test_too_many_files_at_once(auth_client, media_root, settings):
    settings.DATASET_MAX_FILES = 3
    files = [SimpleUploadedFile(f"f{i}.jsonl", b'{"instruction": "a", "output": "b"}\n') for i in range(4)]
    r = auth_client.post("/api/datasets/", {"file": files}, format="multipart")
    _assert_refused(r, 400, "too many files", media_root=media_root)


def test_bad_column_mapping_and_format(auth_client, media_root):
    ok = b'{"instruction": "a", "output": "b"}\n'
    _assert_refused(
        _post(auth_client, "a.jsonl", ok, column_mapping="{not json"), 400, "column_mapping", media_root=media_root
    )
    _assert_refused(_post(auth_client, "a.jsonl", ok, format="yaml"), 400, "unknown format", media_root=media_root)


def test_upload_past_the_quota(auth_client, user, media_root):
    user.quota_overrides = {"storage_bytes": 1000}
    user.save()
    lines = [json.dumps({"instruction": f"q{i}", "output": "a"}).encode() + b"\n" for i in range(20)]
    ok = b"".join(lines)
    small = b"".join(lines[:10])
    assert len(small) < 1000 < len(small) + len(ok)
    assert _post(auth_client, "a.jsonl", small).status_code == 201
    r = _post(auth_client, "b.jsonl", ok)
    assert r.status_code == 413 and "quota" in r.json()["detail"]
    assert Dataset.objects.count() == 1 and len(stored_files(media_root)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e
def test_parallel_uploads_cannot_overshoot_the_quota(daphne_url, media_root_for_servers, test_db_name, tmp_path):
    # Two web processes, so the uploads really run at the same time (one daphne runs sync views on one thread).
    from tests.processes import server_env, start_daphne, stop

    second, port = start_daphne(server_env(test_db_name), tmp_path / "daphne2.log")
    urls = [daphne_url, f"http://127.0.0.1:{port}"]
    from accounts.models import User
    from accounts.services import create_api_token

    user = User.objects.create_user(
        username="par", email="par@example.com", password="x-Strong-pass-1", quota_overrides={"storage_bytes": 50_000}
    )
    key = create_api_token(user, name="t").key
    content = b"".join(json.dumps({"instruction": f"q{i}", "output": "a" * 20}).encode() + b"\n" for i in range(700))
    assert 25_000 < len(content) < 50_000  # one fits, two do not
    codes: list[int] = []
    barrier = threading.Barrier(4)
    # Files left by an earlier run of the suite (user ids restart with each test database) are not this test's.
    before = {p for p in stored_files(media_root_for_servers) if f"datasets/{user.pk}/" in str(p)}

    def upload(url: str) -> None:
        barrier.wait()
        r = requests.post(
            f"{url}/api/datasets/",
            headers={"Authorization": f"Token {key}"},
            files={"file": ("p.jsonl", content)},
            timeout=60,
        )
        codes.append(r.status_code)

    threads = [threading.Thread(target=upload, args=(urls[i % 2],)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop(second)
    assert sorted(codes) == [201, 413, 413, 413]
    assert Dataset.objects.filter(owner=user).count() == 1
    assert (
        len([p for p in stored_files(media_root_for_servers) if f"datasets/{user.pk}/" in str(p) and p not in before])
        == 1
    )
