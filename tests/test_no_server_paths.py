"""No server path in an API response, a websocket push or a job's log: errors raised with a file's full path reach
the user as `…/<last part>`, while the user's own data (previews, generated text) keeps every character."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from finetune.redaction import hide_in, hide_server_paths
from tests.factories import FineTunedModelFactory, TrainingJobFactory


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _server_roots() -> list[str]:
    return [
        str(settings.BASE_DIR),
        str(settings.MEDIA_ROOT),
        str(settings.ARTIFACT_CACHE_DIR),
        str(settings.TRAINING_RUNS_DIR),
        "/tmp/",
    ]


def assert_no_server_path(text: str) -> None:
    for root in _server_roots():
        assert root not in text, f"{root} in {text[:500]}"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            f"No such file or directory: '{settings.MEDIA_ROOT}/datasets/7/train.jsonl'",
            "No such file or directory: '…/train.jsonl'",
        ),
        (
            f"Cannot read {settings.TRAINING_RUNS_DIR}/job-3-a1/checkpoint-5/model.safetensors.",
            "Cannot read …/model.safetensors.",
        ),
        ("llama.cpp failed on /tmp/tmpab12/merged (exit 1)", "llama.cpp failed on …/merged (exit 1)"),
        ("see https://huggingface.co/api/models/x and POST /api/training/jobs/", None),
        ("a /variable named /usr2 and ~/notes", None),
    ],
)
def test_server_paths_become_their_last_part_and_urls_stay(text, shown):
    assert hide_server_paths(text) == (shown or text)


def test_only_the_platforms_messages_are_rewritten_never_user_data():
    data = {
        "detail": "Cannot open /var/lib/x/file.bin",
        "rows": [{"instruction": "cd /var/log && ls"}],
        "errors": {"file": ["bad file /tmp/a/b.jsonl"]},
        "text": "/usr/bin/python",
    }
    shown = hide_in(data)
    assert shown["detail"] == "Cannot open …/file.bin" and shown["errors"]["file"] == ["bad file …/b.jsonl"]
    assert shown["rows"] == data["rows"] and shown["text"] == "/usr/bin/python"


@pytest.mark.django_db
def test_a_failed_jobs_error_and_log_lines_hold_no_server_path(user, monkeypatch, django_capture_on_commit_callbacks):
    from training import events, services

    job = TrainingJobFactory(owner=user, status="running", lease_owner="w1")
    path = f"{settings.TRAINING_RUNS_DIR}/job-{job.pk}-a1/data/train.jsonl"
    pushed: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "_send_now", lambda job_id, message, wait: pushed.append(message))
    with django_capture_on_commit_callbacks(execute=True):
        services.record_event(job.pk, {"type": "log", "level": "error", "line": f"could not read {path}"})
        services.fail_job(job.pk, f"Bad data in {path}: line 3 is not JSON.", kind="data", worker_id="w1")
    client = _client(user)
    detail = client.get(f"/api/training/jobs/{job.pk}/")
    logs = client.get(f"/api/training/jobs/{job.pk}/logs/")
    assert detail.json()["error"] == "Bad data in …/train.jsonl: line 3 is not JSON."
    assert "could not read …/train.jsonl" in logs.content.decode()
    for body in (detail.content.decode(), logs.content.decode(), json.dumps(pushed)):
        assert_no_server_path(body)
    assert {p["type"] for p in pushed} >= {"log", "status"}


@pytest.mark.django_db
def test_a_failed_export_shows_no_server_path(user, tmp_path: Path):
    """A real export of a model whose files are neither an adapter nor a model: the engine's error names the folder."""
    from models_app import exports
    from models_app.artifacts import store_model_folder

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "notes.txt").write_text("not a model")
    model = FineTunedModelFactory(owner=user, **store_model_folder(broken, f"artifacts/models/test-{user.pk}"))
    export = exports.request_export(user, model.pk, "merged", None)
    exports.run_export(export.pk, export.run_token)
    response = _client(user).get(f"/api/models/exports/{export.pk}/")
    body = response.json()
    assert body["status"] == "failed" and "…/" in body["error"], body
    assert_no_server_path(response.content.decode())
