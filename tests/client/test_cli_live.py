"""The Python client and the `finetune` CLI against the live platform: daphne and a real Celery worker that validates,
trains SmolLM2 and exports. One job trains (watched at once by the CLI in a subprocess, with the token, and by the
library over the websocket with a session, whose socket is dropped mid-run to prove the reconnect and backfill);
another fails at training time and `watch` says so with its exit code."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from finetune_client import Client, TaskFailed
from finetune_client.cli import EXIT_API, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main

from tests.factories import PASSWORD, TINY_HYPER, UserFactory, alpaca_rows, make_ready_dataset
from tests.processes import free_port

HUB_TOKEN = "hf_validTokenForAlice1234"  # known to the fake Hub as alice-hf (tests/conftest.py)
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """No credentials from the developer's machine: the config file lives in tmp_path."""
    for name in ("FINETUNE_URL", "FINETUNE_TOKEN", "FINETUNE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FINETUNE_CONFIG", str(tmp_path / "config" / "finetune.json"))
    return tmp_path


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of `finetune argv...` run in this process."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_upload_train_watch_export_push_and_download(
    daphne_url, platform_worker, fake_hub_server, cli_env, capsys, monkeypatch
):
    from models_app.models import BaseModel, ModelExport

    UserFactory(username="cli-user")
    base = BaseModel.objects.ensure_embedded()

    # login: signs in with the password, creates an API token and keeps it in a file only the user can read.
    monkeypatch.setenv("FINETUNE_PASSWORD", PASSWORD)
    code, out, err = run_cli(capsys, "login", "--url", daphne_url, "--username", "cli-user")
    assert code == EXIT_OK, err
    config = Path(os.environ["FINETUNE_CONFIG"])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and "as cli-user" in out
    token = json.loads(config.read_text())["token"]
    assert json.loads(config.read_text())["url"] == daphne_url

    # upload a real file (four Alpaca rows); the CLI waits for the worker's validation and prints the verdict.
    data = cli_env / "tiny.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in alpaca_rows(4)))
    code, out, err = run_cli(capsys, "datasets", "upload", data, "--name", "tiny", "--json")
    assert code == EXIT_OK, err
    dataset = json.loads(out)
    assert dataset["status"] == "ready" and dataset["report"]["rows"] == 4 and "uploading" in err
    code, out, err = run_cli(capsys, "datasets", "report", dataset["id"])
    assert code == EXIT_OK and f"dataset {dataset['id']} 'tiny' v1: ready, verdict " in out and "4 rows" in out

    # create the job from a YAML spec with the API's fields
    spec = cli_env / "job.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "cli",
                "base_model": base.pk,
                "dataset": dataset["id"],
                "method": "sft",
                "weights": "lora",
                "hyperparameters": TINY_HYPER,
            }
        )
    )
    code, out, err = run_cli(capsys, "jobs", "create", spec, "--json")
    assert code == EXIT_OK, err
    job_id = json.loads(out)["id"]

    # The CLI (a separate process, credentials from the environment) and the library (a session, so the websocket
    # accepts it) follow the same run; the library drops its socket after the first pushed point.
    env = {**os.environ, "FINETUNE_URL": daphne_url, "FINETUNE_TOKEN": token, "FINETUNE_CONFIG": "/nonexistent"}
    watcher_cli = subprocess.Popen(
        [sys.executable, "-m", "finetune_client.cli", "jobs", "watch", str(job_id)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    with Client.login(daphne_url, "cli-user", PASSWORD) as session:
        watcher = session.jobs.watch(job_id, poll_interval=1.0)
        events, dropped = [], False
        for event in watcher:
            events.append(event)
            if event["type"] == "metric" and watcher.socket_points and not dropped:
                watcher.close()
                dropped = True
        points = session.jobs.metrics(job_id)
        assert base.pk in [b["id"] for b in session.models.base()]
        assert session.jobs.wait(job_id)["model"] == watcher.job["model"]  # finished: returns at once
    out, err = watcher_cli.communicate(timeout=300)
    assert watcher_cli.returncode == EXIT_OK, err
    assert watcher.job["status"] == "succeeded", watcher.job["error"]
    model_id = watcher.job["model"]
    assert f"job {job_id} succeeded: model {model_id}" in out
    assert "step 6/6" in err and "loss" in err and "lr " in err and "eta" in err

    # every stored point once, in seq order, although the socket went away mid-run
    seqs = [e["seq"] for e in events if e["type"] == "metric"]
    assert seqs == [p["seq"] for p in points] == list(range(1, len(points) + 1))
    assert dropped and watcher.connects >= 2 and watcher.socket_points >= 1
    steps = [e["step"] for e in events if e["type"] == "metric" and e["kind"] == "metric"]
    assert steps == list(range(1, 7))
    assert [e["status"] for e in events if e["type"] == "status"][-1] == "succeeded"

    # export the adapter (the CLI waits for the worker), then download it; the bytes are checked against SHA-256
    code, out, err = run_cli(capsys, "models", "export", model_id, "--format", "adapter", "--json")
    assert code == EXIT_OK, err
    export = json.loads(out)
    assert export["status"] == "succeeded" and export["format"] == "adapter"
    code, out, err = run_cli(capsys, "models", "download", export["id"], "-o", f"{cli_env / 'downloads'}/")
    assert code == EXIT_OK, err
    path = Path(out.strip())
    assert path.parent == cli_env / "downloads" and path.name == export["file_name"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ModelExport.objects.get(pk=export["id"]).sha256
    with zipfile.ZipFile(path) as z:
        assert {"adapter_config.json", "README.md"} <= {Path(n).name for n in z.namelist()}

    # a quantization the server does not accept is passed through, and the server's reason is shown
    code, out, err = run_cli(capsys, "models", "export", model_id, "--format", "gguf", "--quantization", "Q3_BOGUS")
    assert code == EXIT_API and "q3_bogus" in err.lower() and "HTTP 400" in err

    # push to the (fake) Hub with the Hugging Face token saved in the profile; the CLI waits for the worker's push
    with Client(daphne_url, token) as client:
        client.post("/api/auth/hf-token/", {"token": HUB_TOKEN})
    code, out, err = run_cli(capsys, "models", "push-hub", model_id, "--repo", "cli-tiny", "--json")
    assert code == EXIT_OK, err
    push = json.loads(out)
    assert push["status"] == "succeeded" and push["repo_id"] == "alice-hf/cli-tiny"
    assert (fake_hub_server.repo_dir("alice-hf/cli-tiny") / "adapter_config.json").is_file()

    # resuming a job that succeeded: the API's 409 comes back as exit code 3 with its message
    code, out, err = run_cli(capsys, "jobs", "resume", job_id)
    assert code == EXIT_API and "Only a failed or cancelled job can be resumed" in err

    # Operations telemetry: the worker logged the run as JSON lines carrying job_id, user_id and the task's id, and
    # /metrics (with the scraper's token) counts the finished job and the export.
    records = [json.loads(line) for line in platform_worker["log"].read_text().splitlines() if line.startswith("{")]
    of_job = [r for r in records if r.get("job_id") == int(job_id)]
    assert of_job and all(r["task_id"] and r["user_id"] for r in of_job), records[-5:]
    assert any(r["logger"].startswith("training.engine") for r in of_job)
    assert_metrics_count_the_job(int(job_id))


def test_watch_exits_non_zero_when_the_job_fails(daphne_url, platform_worker, cli_env, capsys, monkeypatch):
    from accounts.services import create_api_token
    from models_app.models import BaseModel

    user = UserFactory(username="cli-failing")
    token = create_api_token(user, name="ci").key
    dataset = make_ready_dataset(user)
    monkeypatch.setenv("FINETUNE_URL", daphne_url)
    monkeypatch.setenv("FINETUNE_TOKEN", token)
    # LoRA on a module the model does not have: accepted by the API, refused by the engine once the model is loaded
    spec = cli_env / "job.json"
    spec.write_text(
        json.dumps(
            {
                "name": "doomed",
                "base_model": BaseModel.objects.ensure_embedded().pk,
                "dataset": dataset.pk,
                "hyperparameters": {**TINY_HYPER, "lora_target_modules": ["no_such_proj"]},
            }
        )
    )
    code, out, err = run_cli(capsys, "jobs", "create", spec, "--watch")
    assert code == EXIT_FAILED
    job_id = int(err.split("job ", 1)[1].split()[0])
    assert f"job {job_id} failed" in err and "lora_target_modules" in err

    code, out, err = run_cli(capsys, "jobs", "watch", job_id)
    assert code == EXIT_FAILED and "no_such_proj" in err
    code, out, err = run_cli(capsys, "jobs", "cancel", job_id)
    assert code == EXIT_API and "already failed" in err
    with Client(daphne_url, token) as client, pytest.raises(TaskFailed, match="no_such_proj") as failed:
        client.jobs.wait(job_id)
    assert failed.value.status == "failed" and failed.value.result["id"] == job_id


def test_usage_auth_and_connection_errors_have_their_exit_codes(daphne_url, cli_env, capsys, monkeypatch):
    code, out, err = run_cli(capsys, "jobs", "list")
    assert code == EXIT_USAGE and "finetune login" in err
    code, out, err = run_cli(capsys, "jobs", "watch", "not-a-number")
    assert code == EXIT_USAGE
    code, out, err = run_cli(capsys, "--url", daphne_url, "--token", "wrong", "jobs", "list")
    assert code == EXIT_API and "authentication failed" in err and "Invalid or revoked API token" in err
    code, out, err = run_cli(capsys, "jobs", "create", cli_env / "missing.yaml", "--url", daphne_url, "--token", "x")
    assert code == EXIT_USAGE and "cannot read" in err
    code, out, err = run_cli(capsys, "whoami", "--url", f"http://127.0.0.1:{free_port()}", "--token", "x")
    assert code == EXIT_UNREACHABLE and "could not reach" in err


def assert_metrics_count_the_job(job_id: int) -> None:
    from django.test import Client as DjangoClient
    from django.test import override_settings

    from training.models import TrainingJob

    job = TrainingJob.objects.get(pk=job_id)
    succeeded = TrainingJob.objects.filter(status="succeeded", backend=job.backend).count()
    with override_settings(METRICS_TOKEN="scrape-secret", METRICS_ALLOWED_IPS=[]):
        browser = DjangoClient()
        assert browser.get("/metrics").status_code == 403  # anonymous
        body = browser.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").content.decode()
    assert job.status == "succeeded" and succeeded >= 1
    assert f'finetune_training_jobs{{backend="{job.backend}",state="succeeded"}} {float(succeeded)}' in body, body[
        :2000
    ]
    assert 'finetune_exports{status="succeeded"}' in body and "finetune_celery_queue_length" in body
