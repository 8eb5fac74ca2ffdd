"""Base models from the Hub and Push to Hugging Face, against the fake Hub (a real HTTP server speaking the Hub's
protocol, so huggingface_hub's own client code runs unchanged): search, info, download into the shared cache with
progress, fit estimates, pushes with every file landing on the fake's disk, failures with clear statuses, retry."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from rest_framework.test import APIClient

from accounts import services as accounts
from models_app import hub
from models_app.artifacts import base_model_folder, model_folder
from models_app.models import BaseModel, HubPush
from tests.factories import UserFactory
from tests.fakes.hub import tiny_model_files
from tests.processes import run_async

ALICE = "hf_validTokenForAlice1234"  # alice-hf, write token (tests/conftest.py)
READ_ONLY = "hf_readOnlyTokenCarol0001"  # carol-hf, read token (added here)


@pytest.fixture
def fake(fake_hub):
    """The fake Hub, emptied, with a read-only token for carol-hf and an organisation for alice-hf."""
    fake_hub.reset()
    fake_hub.tokens[READ_ONLY] = "carol-hf"
    fake_hub.token_roles[READ_ONLY] = "read"
    fake_hub.orgs["alice-hf"] = ["alice-org"]
    yield fake_hub
    for repo_id in list(fake_hub.repos):  # configs that model_info read into the shared cache
        cached = Path(settings.FINETUNE_MODEL_CACHE) / f"models--{repo_id.replace('/', '--')}"
        shutil.rmtree(cached, ignore_errors=True)
    fake_hub.reset()


def with_token(token: str = ALICE, **fields: Any):
    """A user whose Hugging Face token was saved the normal way (checked with whoami against the fake)."""
    user = UserFactory(**fields)
    accounts.save_hf_token(user, token=token)
    return user


def client_for(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


@pytest.fixture
def tiny_repo(fake):
    """A tiny text-generation model on the fake Hub under a name unique to this run (the cache outlives runs)."""
    repo_id = f"tiny-org/tiny-llama-{time.time_ns() % 10**9}"
    files, params = tiny_model_files()
    fake.add_model(repo_id, files, downloads=500, likes=7)
    yield repo_id, params
    shutil.rmtree(Path(settings.FINETUNE_MODEL_CACHE) / f"models--{repo_id.replace('/', '--')}", ignore_errors=True)


def _front_matter(readme: str) -> dict[str, Any]:
    match = re.match(r"^---\n(.*?)\n---\n", readme, re.S)
    assert match, readme[:200]
    return yaml.safe_load(match.group(1))


# --- search and info ----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_search_lists_text_generation_models_most_downloaded_first(fake):
    files, _ = tiny_model_files(vocab=64, hidden=8)
    fake.add_model("acme/tiny-chat", files, downloads=10, likes=1)
    fake.add_model("acme/tiny-chat-pro", files, downloads=900, likes=30, gated="manual")
    fake.add_model("acme/tiny-embedder", files, downloads=5000, pipeline_tag="feature-extraction")
    fake.add_model("bob-hf/tiny-secret", files, downloads=99999, private=True)
    user = with_token()
    r = client_for(user).get("/api/models/hub/search/", {"q": "tiny"})
    assert r.status_code == 200, r.content
    assert [m["repo_id"] for m in r.json()] == ["acme/tiny-chat-pro", "acme/tiny-chat"]
    pro = r.json()[0]
    assert pro["downloads"] == 900 and pro["likes"] == 30 and pro["gated"] is True and pro["gated_mode"] == "manual"
    assert pro["pipeline_tag"] == "text-generation"
    search = [q for q in fake.requests if q["path"].startswith("/api/models?")][-1]
    assert search["authorization"] == f"Bearer {ALICE}" and "pipeline_tag=text-generation" in search["path"]


@pytest.mark.django_db
def test_info_reports_architecture_parameters_license_size_and_chat_template(fake, tiny_repo):
    repo_id, params = tiny_repo
    r = client_for(with_token()).get("/api/models/hub/info/", {"repo_id": repo_id})
    assert r.status_code == 200, r.content
    info = r.json()
    assert info["architecture"] == "LlamaForCausalLM" and info["model_type"] == "llama"
    assert info["parameters"] == params and info["parameters_source"] == "safetensors"
    assert info["license"] == "apache-2.0" and info["gated"] is False and info["context_length"] == 4096
    assert info["has_chat_template"] is True and info["has_safetensors"] is True and info["downloadable"] is True
    repo = fake.repos[repo_id].head.files
    assert info["size_bytes"] == sum(f.size for p, f in repo.items() if p != "pytorch_model.bin" and p != "README.md")
    assert info["total_size_bytes"] == sum(f.size for f in repo.values())
    # tokenizer_config.json was read through the Hub's resolve endpoint, with the user's token
    resolve = [q for q in fake.requests if "/resolve/" in q["path"] and q["path"].endswith("tokenizer_config.json")]
    assert resolve and resolve[0]["authorization"] == f"Bearer {ALICE}"


@pytest.mark.django_db
def test_info_of_a_repo_without_safetensors_says_it_cannot_be_downloaded(fake):
    fake.add_model(
        "acme/pickles-only",
        {
            "config.json": json.dumps(
                {
                    "architectures": ["LlamaForCausalLM"],
                    "model_type": "llama",
                    "hidden_size": 8,
                    "num_hidden_layers": 1,
                    "vocab_size": 10,
                }
            ),
            "pytorch_model.bin": b"x" * 10,
        },
    )
    user = with_token()
    info = client_for(user).get("/api/models/hub/info/", {"repo_id": "acme/pickles-only"}).json()
    assert info["downloadable"] is False and "safetensors" in info["problems"][0]
    assert info["parameters_source"] == "config" and info["parameters"] > 0 and info["has_chat_template"] is False
    r = client_for(user).post("/api/models/hub/download/", {"repo_id": "acme/pickles-only"}, format="json")
    assert r.status_code == 400 and "safetensors" in r.json()["detail"]


@pytest.mark.django_db
def test_unknown_repo_is_404_and_a_bad_repo_id_is_400(fake):
    c = client_for(with_token())
    r = c.get("/api/models/hub/info/", {"repo_id": "acme/does-not-exist"})
    assert r.status_code == 404 and "acme/does-not-exist" in r.json()["detail"]
    r = c.get("/api/models/hub/info/", {"repo_id": "../etc/passwd"})
    assert r.status_code == 400 and "repo_id" in r.json()["errors"]


@pytest.mark.django_db
def test_hub_outage_during_search_is_a_clear_502(fake):
    fake.fail(r"^/api/models$", 503, retry_after=0)  # huggingface_hub retries 5xx itself (5 times, 1 s apart)
    r = client_for(with_token()).get("/api/models/hub/search/", {"q": "x"})
    assert r.status_code == 502 and "HTTP 503" in r.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method,url,body",
    [
        ("get", "/api/models/hub/search/?q=x", None),
        ("get", "/api/models/hub/info/?repo_id=acme/x", None),
        ("post", "/api/models/hub/download/", {"repo_id": "acme/x"}),
        ("post", "/api/models/{model}/push-hub/", {"repo_name": "x", "private": True}),
    ],
)
def test_user_without_hf_token_is_told_to_add_one_in_their_profile(fake, user, make_finetuned, method, url, body):
    model = make_finetuned(user)
    r = getattr(client_for(user), method)(url.format(model=model.pk), body, format="json")
    assert r.status_code == 400, r.content
    assert "Hugging Face access token in your profile" in r.json()["detail"]
    assert not [q for q in fake.requests if q["path"] != "/api/whoami-v2"]


# --- download -----------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_download_puts_the_model_in_the_shared_cache_with_progress(
    fake, tiny_repo, django_capture_on_commit_callbacks
):
    from channels.layers import get_channel_layer

    repo_id, params = tiny_repo
    user = with_token()
    r = client_for(user).post("/api/models/hub/download/", {"repo_id": repo_id}, format="json")
    assert r.status_code == 202, r.content
    row = BaseModel.objects.get(pk=r.json()["id"])
    assert row.status == "downloading" and row.source == "hub" and row.parameters == params and row.added_by == user
    layer = get_channel_layer()
    channel = run_async(layer.new_channel())
    run_async(layer.group_add(f"user-{user.pk}", channel))
    fake.throttle_bytes_per_s = 10_000_000  # ~2.5 s, so the progress reporter sees 10 MB chunks arriving
    with django_capture_on_commit_callbacks(execute=True):
        hub.run_download(row.pk, user.pk)

    async def drain() -> list[dict[str, Any]]:
        import asyncio

        out = []
        while True:
            try:
                out.append((await asyncio.wait_for(layer.receive(channel), 2))["payload"])
            except TimeoutError:
                return out

    events = [e for e in run_async(drain()) if e["kind"] == "download" and e["id"] == row.pk]
    row.refresh_from_db()
    assert row.status == "available" and row.download_progress == 1.0 and row.error == "", row.error
    # Stored in the artifact store at the revision downloaded; this host's Hub download folder is gone.
    assert row.artifact_key.startswith(f"artifacts/base-models/{row.pk}/") and len(row.revision) == 40
    assert not (Path(settings.FINETUNE_MODEL_CACHE) / f"models--{repo_id.replace('/', '--')}").exists()
    with base_model_folder(row) as path:
        folder = Path(path)
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "tokenizer_config.json", "tokenizer.json", "model.safetensors"} <= names
        assert "pytorch_model.bin" not in names and "README.md" not in names
        assert (folder / "model.safetensors").read_bytes() == (
            fake.repo_dir(repo_id) / "model.safetensors"
        ).read_bytes()
    assert row.has_chat_template and row.architecture == "LlamaForCausalLM" and row.context_length == 4096
    progress = [e["progress"] for e in events]
    assert progress[0] == 0.0 and progress[-1] == 1.0 and events[-1]["status"] == "available"
    assert any(0 < p < 1 for p in progress), progress
    assert progress == sorted(progress)
    # A second delivery of the task, or a second request, changes nothing.
    hub.run_download(row.pk, user.pk)
    again = client_for(user).post("/api/models/hub/download/", {"repo_id": repo_id}, format="json")
    assert again.status_code == 200 and again.json()["id"] == row.pk and again.json()["status"] == "available"
    # The catalogue lists it and the fit estimate reads its downloaded config.
    fit = client_for(user).get(f"/api/models/base/{row.pk}/fit/", {"method": "lora", "max_length": 256}).json()
    assert fit["parameters"] == params and fit["fits"] is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    "breakage,expected,retryable_status",
    [
        ("gated", "gated model", False),
        ("deleted", "has no repository", False),
        ("revoked", "rejected your token", False),
        ("outage", "HTTP 500", True),
    ],
)
def test_download_failures_end_in_a_clear_failed_status(fake, tiny_repo, breakage, expected, retryable_status):
    repo_id, _ = tiny_repo
    user = with_token()
    row = hub.request_download(user, repo_id)
    if breakage == "gated":
        fake.repos[repo_id].gated = "manual"
    elif breakage == "deleted":
        del fake.repos[repo_id]
    elif breakage == "revoked":
        del fake.tokens[ALICE]
    else:
        fake.fail(r"/resolve/", 500, retry_after=0)
    hub.run_download(row.pk, user.pk)
    row.refresh_from_db()
    assert row.status == "failed" and expected in row.error, row.error
    assert not any(
        (Path(settings.FINETUNE_MODEL_CACHE) / f"models--{repo_id.replace('/', '--')}").rglob("model.safetensors")
    )
    if retryable_status:  # a failed download is tried again by asking for it again
        fake.clear_failures()
        again = hub.request_download(user, repo_id)
        assert again.pk == row.pk and again.status == "downloading"
        hub.run_download(row.pk, user.pk)
        row.refresh_from_db()
        assert row.status == "available", row.error


# --- fit estimate -------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_fit_estimate_gives_memory_for_full_lora_and_qlora(auth_client):
    base = BaseModel.objects.ensure_embedded()
    r = auth_client.get(f"/api/models/base/{base.pk}/fit/", {"method": "qlora", "max_length": 512, "batch_size": 2})
    assert r.status_code == 200, r.content
    fit = r.json()
    mem = fit["memory_gb_by_method"]
    assert mem["full"] > mem["lora"] > mem["qlora"] > 0 and fit["memory_gb"] == mem["qlora"]
    assert fit["parameters"] == base.parameters and isinstance(fit["fits"], bool)
    assert set(fit["modal_gpus_fit"]) == set(settings.MODAL_GPU_MEMORY_GB)
    bigger = auth_client.get(
        f"/api/models/base/{base.pk}/fit/", {"method": "qlora", "max_length": 4096, "batch_size": 8}
    ).json()
    assert bigger["memory_gb"] > fit["memory_gb"]
    bad = auth_client.get(f"/api/models/base/{base.pk}/fit/", {"method": "dpo"})
    assert bad.status_code == 400 and "method" in bad.json()["errors"]
    assert auth_client.get("/api/models/base/999999/fit/").status_code == 404


# --- push -----------------------------------------------------------------------------------------------------------
def _push(user, model, repo_name: str = "tiny-alpaca", private: bool = True) -> HubPush:
    r = client_for(user).post(
        f"/api/models/{model.pk}/push-hub/", {"repo_name": repo_name, "private": private}, format="json"
    )
    assert r.status_code == 202, r.content
    push = HubPush.objects.get(pk=r.json()["id"])
    hub.run_push(push.pk, push.run_token)
    push.refresh_from_db()
    return push


@pytest.mark.django_db
def test_push_creates_a_private_repo_with_every_file_and_a_valid_model_card(fake, make_finetuned, tmp_path):
    user = with_token()
    model = make_finetuned(user)
    r = client_for(user).post(
        f"/api/models/{model.pk}/push-hub/", {"repo_name": "tiny-alpaca", "private": True}, format="json"
    )
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["status"] == "queued" and body["repo_url"] == f"{settings.HF_ENDPOINT}/alice-hf/tiny-alpaca"
    push = HubPush.objects.get(pk=body["id"])
    hub.run_push(push.pk, push.run_token)
    push.refresh_from_db()
    assert push.status == "succeeded", push.error
    assert push.repo_id == "alice-hf/tiny-alpaca" and push.progress == 1.0 and push.started and push.finished
    repo = fake.repos["alice-hf/tiny-alpaca"]
    assert repo.private is True and push.commit_sha == repo.head.oid
    assert push.repo_url == f"{fake.url}/alice-hf/tiny-alpaca"
    on_disk = fake.repo_dir("alice-hf/tiny-alpaca")
    names = {p.name for p in on_disk.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "README.md",
    } <= names
    with model_folder(model) as src:
        for name in ("adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"):
            assert (on_disk / name).read_bytes() == (src / name).read_bytes(), name
    adapter = json.loads((on_disk / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    meta = _front_matter((on_disk / "README.md").read_text())
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["library_name"] == "peft"
    assert meta["license"] == "apache-2.0" and "finetune" in meta["tags"] and "lora" in meta["tags"]
    assert meta["pipeline_tag"] == "text-generation"
    # the fake parsed the same card the way the Hub does
    info = client_for(user).get("/api/models/hub/info/", {"repo_id": "alice-hf/tiny-alpaca"}).json()
    assert info["license"] == "apache-2.0" and info["has_chat_template"] is True
    # listed on the model, and as a push
    listed = client_for(user).get(f"/api/models/{model.pk}/pushes/").json()
    assert [p["id"] for p in listed] == [push.pk] and listed[0]["commit_sha"] == push.commit_sha
    assert client_for(user).get(f"/api/models/push-hub/{push.pk}/").json()["status"] == "succeeded"


@pytest.mark.django_db
def test_push_of_a_full_fine_tune_uploads_the_model_folder(fake, make_finetuned, tmp_path):
    files, _ = tiny_model_files(vocab=1000, hidden=16)
    folder = tmp_path / "full"
    folder.mkdir()
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json", "model.safetensors"):
        content = files[name]
        (folder / name).write_bytes(
            content.read_bytes()
            if isinstance(content, Path)
            else (content.encode() if isinstance(content, str) else content)
        )
    user = with_token()
    push = _push(user, make_finetuned(user, name="full-ft", weights="full", model_dir=str(folder)), "full-ft")
    assert push.status == "succeeded", push.error
    on_disk = fake.repo_dir("alice-hf/full-ft")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= {
        p.name for p in on_disk.iterdir()
    }
    assert (on_disk / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    meta = _front_matter((on_disk / "README.md").read_text())
    assert meta["library_name"] == "transformers" and meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "full" in meta["tags"]


@pytest.mark.django_db
def test_a_repush_is_a_new_commit_and_a_second_delivery_is_a_noop(fake, make_finetuned):
    user = with_token()
    model = make_finetuned(user)
    first = _push(user, model)
    second = _push(user, model)
    assert first.status == second.status == "succeeded", (first.error, second.error)
    commits = fake.commits("alice-hf/tiny-alpaca")
    assert len(commits) == 3  # repo creation + two pushes
    assert [c.oid for c in commits[1:]] == [first.commit_sha, second.commit_sha]
    assert "README.md" in commits[2].changed  # the card names the push; unchanged weights are not re-sent
    hub.run_push(second.pk, second.run_token)  # second delivery of the same task
    assert len(fake.commits("alice-hf/tiny-alpaca")) == 3


@pytest.mark.django_db
def test_push_to_an_organisation_and_refusal_of_a_foreign_namespace(fake, make_finetuned):
    user = with_token()
    model = make_finetuned(user)
    org = _push(user, model, "alice-org/shared-model", private=False)
    assert org.status == "succeeded", org.error
    assert fake.repos["alice-org/shared-model"].private is False
    foreign = _push(user, model, "bob-hf/not-mine")
    assert foreign.status == "failed" and not foreign.retryable
    assert "cannot push to the namespace 'bob-hf'" in foreign.error and "alice-org" in foreign.error
    assert "bob-hf/not-mine" not in fake.repos


@pytest.mark.django_db
def test_read_only_token_fails_with_a_clear_status(fake, make_finetuned):
    user = with_token(READ_ONLY)
    push = _push(user, make_finetuned(user))
    assert push.status == "failed" and not push.retryable
    assert "read-only" in push.error and "write permission" in push.error
    assert not fake.repos and not [q for q in fake.requests if q["path"] == "/api/repos/create"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "where,status,expected,retryable",
    [
        (r"^/api/repos/create$", 429, "rate-limiting", True),
        (r"^/api/repos/create$", 500, "internal error (HTTP 500)", True),
        (r"/commit/", 403, "no write access", False),
        (r"/commit/", 404, "has no repository", False),
    ],
)
def test_hub_errors_end_in_a_clear_status(fake, make_finetuned, where, status, expected, retryable):
    user = with_token()
    fake.fail(where, status)
    push = _push(user, make_finetuned(user))
    assert push.status == "failed" and expected in push.error, push.error
    assert push.retryable is retryable and push.finished is not None and push.stage.startswith("failed while")


@pytest.mark.django_db
def test_revoked_token_and_unreachable_hub(fake, make_finetuned, settings):
    user = with_token()
    model = make_finetuned(user)
    del fake.tokens[ALICE]
    revoked = _push(user, model)
    assert revoked.status == "failed" and "rejected your token" in revoked.error and not revoked.retryable
    settings.HF_ENDPOINT = "http://127.0.0.1:9"  # nothing listens there
    down = _push(user, model)
    assert down.status == "failed" and "Could not reach" in down.error and down.retryable


@pytest.mark.django_db
def test_429_is_retryable_and_the_retry_succeeds_once_the_hub_recovers(fake, make_finetuned):
    user = with_token()
    model = make_finetuned(user)
    fake.fail(r"^/api/repos/create$", 429)
    push = _push(user, model)
    assert push.status == "failed" and push.retryable
    c = client_for(user)
    fake.clear_failures()
    r = c.post(f"/api/models/push-hub/{push.pk}/retry/")
    assert r.status_code == 202 and r.json()["status"] == "queued" and r.json()["error"] == ""
    push.refresh_from_db()
    hub.run_push(push.pk, push.run_token)
    push.refresh_from_db()
    assert push.status == "succeeded", push.error
    assert (fake.repo_dir("alice-hf/tiny-alpaca") / "adapter_model.safetensors").is_file()
    assert push.commit_sha == fake.repos["alice-hf/tiny-alpaca"].head.oid
    again = c.post(f"/api/models/push-hub/{push.pk}/retry/")
    assert again.status_code == 409 and "Only a failed push" in again.json()["detail"]


@pytest.mark.django_db
def test_lfs_setting_uploads_through_the_lfs_batch_api(fake, make_finetuned, settings):
    """HF_UPLOAD_PROTOCOL=lfs: files over the fake's LFS threshold go through the LFS batch API and a basic PUT, and
    no Xet token is asked for (hf_xet is installed, so without the setting they would go through Xet)."""
    settings.HF_UPLOAD_PROTOCOL = "lfs"
    fake.lfs_threshold = 1024 * 1024
    user = with_token()
    model = make_finetuned(user)
    push = _push(user, model)
    assert push.status == "succeeded", push.error
    paths = [q["path"] for q in fake.requests]
    assert any(p.endswith(".git/info/lfs/objects/batch") for p in paths)
    assert any(p.startswith("/__lfs/") and p.endswith("/verify") for p in paths)
    assert not [p for p in paths if "/xet-" in p]
    assert "/api/validate-yaml" in paths  # the single-commit path validates the card's metadata with the Hub
    files = fake.repos["alice-hf/tiny-alpaca"].head.files
    assert files["adapter_model.safetensors"].lfs and not files["README.md"].lfs
    on_disk = fake.repo_dir("alice-hf/tiny-alpaca") / "adapter_model.safetensors"
    with model_folder(model) as src:
        assert on_disk.read_bytes() == (src / "adapter_model.safetensors").read_bytes()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "status,expected,env_disabled_xet",
    [
        (403, "your token has no write access to alice-hf", False),
        (404, "does not offer Xet storage", True),
    ],
)
def test_xet_setting_asks_for_a_xet_write_token_and_a_refusal_says_what_happened(
    fake, make_finetuned, settings, monkeypatch, status, expected, env_disabled_xet
):
    """HF_UPLOAD_PROTOCOL=xet (the setting wins even where HF_HUB_DISABLE_XET was set when huggingface_hub was
    imported): the large file goes through Xet, whose write token the Hub refuses with a 4xx (hf_xet raises a plain
    ConnectionError naming the status); the push says so, not "could not reach the Hub"."""
    import huggingface_hub.constants

    if env_disabled_xet:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    settings.HF_UPLOAD_PROTOCOL = "xet"
    fake.lfs_threshold = 1024 * 1024
    fake.refuse_xet_token(status)
    user = with_token()
    push = _push(user, make_finetuned(user))
    assert push.status == "failed" and not push.retryable, push.error
    assert "Could not reach" not in push.error and f"(HTTP {status})" in push.error, push.error
    assert "Xet storage write token for alice-hf/tiny-alpaca" in push.error and expected in push.error, push.error
    assert "HF_UPLOAD_PROTOCOL=lfs" in push.error and "via Xet" in push.stage, push.stage
    paths = [q["path"] for q in fake.requests]
    assert "/api/models/alice-hf/tiny-alpaca/xet-write-token/main" in paths
    assert not [p for p in paths if p.endswith("/lfs/objects/batch") or p.startswith("/__lfs/")]
    assert len(fake.commits("alice-hf/tiny-alpaca")) == 1  # only the repo's creation: nothing half-committed


@pytest.mark.django_db
def test_a_lost_push_can_be_retried_but_a_live_one_cannot(fake, make_finetuned):
    from datetime import timedelta

    from django.utils import timezone

    user = with_token()
    model = make_finetuned(user)
    c = client_for(user)
    live = HubPush.objects.create(
        owner=user, model=model, repo_id="alice-hf/x", status="running", started=timezone.now(), run_token="a" * 32
    )
    assert c.post(f"/api/models/push-hub/{live.pk}/retry/").status_code == 409
    lost = HubPush.objects.create(
        owner=user,
        model=model,
        repo_id="alice-hf/x",
        status="running",
        run_token="b" * 32,
        started=timezone.now() - timedelta(seconds=settings.HF_PUSH_STALE_SECONDS + 60),
    )
    r = c.post(f"/api/models/push-hub/{lost.pk}/retry/")
    assert r.status_code == 202 and r.json()["status"] == "queued"
    lost.refresh_from_db()
    hub.run_push(lost.pk, "b" * 32)  # the dead worker's redelivered message no longer matches
    assert HubPush.objects.get(pk=lost.pk).status == "queued"
    hub.run_push(lost.pk, lost.run_token)
    assert HubPush.objects.get(pk=lost.pk).status == "succeeded"


@pytest.mark.django_db
def test_asking_again_for_a_model_still_downloading_queues_the_task_again(
    fake, tiny_repo, django_capture_on_commit_callbacks
):
    repo_id, _ = tiny_repo
    user = with_token()
    with django_capture_on_commit_callbacks() as first:
        row = hub.request_download(user, repo_id)
    with django_capture_on_commit_callbacks() as second:
        again = hub.request_download(user, repo_id)
    assert again.pk == row.pk and again.status == "downloading" and len(first) == len(second) == 1


# --- access -------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_another_users_models_and_pushes_are_404(fake, make_finetuned):
    alice = with_token()
    bob = with_token("hf_validTokenForBob5678")
    model = make_finetuned(alice)
    push = _push(alice, model)
    c = client_for(bob)
    assert c.post(f"/api/models/{model.pk}/push-hub/", {"repo_name": "steal"}, format="json").status_code == 404
    assert c.get(f"/api/models/{model.pk}/pushes/").status_code == 404
    assert c.get(f"/api/models/push-hub/{push.pk}/").status_code == 404
    assert c.post(f"/api/models/push-hub/{push.pk}/retry/").status_code == 404
    assert HubPush.objects.count() == 1


@pytest.mark.django_db
def test_push_request_validates_the_repo_name(fake, make_finetuned):
    user = with_token()
    model = make_finetuned(user)
    for bad in ("", "a/b/c", "-leading", "double--dash", "x" * 120, "spaces here"):
        r = client_for(user).post(f"/api/models/{model.pk}/push-hub/", {"repo_name": bad}, format="json")
        assert r.status_code == 400 and "repo_name" in r.json()["errors"], (bad, r.content)
    assert not HubPush.objects.exists()


def test_openapi_schema_documents_the_hub_routes(client):
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    for p in (
        "/api/models/hub/search/",
        "/api/models/hub/info/",
        "/api/models/hub/download/",
        "/api/models/base/{id}/fit/",
        "/api/models/{id}/push-hub/",
        "/api/models/{id}/pushes/",
        "/api/models/push-hub/{id}/",
        "/api/models/push-hub/{id}/retry/",
    ):
        assert p in schema["paths"], p


# --- end to end through a real worker ------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_push_through_a_real_celery_worker(fake, make_finetuned, celery_worker_process):
    user = with_token()
    model = make_finetuned(user)
    r = client_for(user).post(
        f"/api/models/{model.pk}/push-hub/", {"repo_name": "from-worker", "private": True}, format="json"
    )
    assert r.status_code == 202, r.content
    push_id = r.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        push = HubPush.objects.get(pk=push_id)
        if push.status in ("succeeded", "failed"):
            break
        time.sleep(0.3)
    assert push.status == "succeeded", (push.status, push.stage, push.error)
    repo = fake.repos["alice-hf/from-worker"]
    assert repo.private and push.commit_sha == repo.head.oid
    assert (fake.repo_dir("alice-hf/from-worker") / "adapter_model.safetensors").is_file()
    assert _front_matter((fake.repo_dir("alice-hf/from-worker") / "README.md").read_text())["base_model"]
