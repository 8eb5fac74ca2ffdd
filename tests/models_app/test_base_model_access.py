"""Base models from private or gated Hub repos are seen and used only by users whose own Hugging Face token reads
the repo (asked of the fake Hub at use time, the answer cached briefly); public ones stay shared. Also: the download
size cap and the base-model snapshots on the operators' storage page."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts import services as accounts
from dashboard.storage import storage_usage
from models_app import catalogue, hub, playground
from models_app.models import BaseModel
from tests.factories import TINY_HYPER, UserFactory, make_ready_dataset
from tests.fakes.hub import tiny_model_files
from training.models import TrainingJob

ALICE = "hf_validTokenForAlice1234"  # alice-hf (tests/conftest.py)
BOB = "hf_validTokenForBob5678"  # bob-hf (tests/conftest.py)
CAROL = "hf_validTokenForCarol9012"  # carol-hf (added here)
HYPER = dict(TINY_HYPER)
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 4}


@pytest.fixture
def fake(fake_hub, settings, tmp_path):
    """The fake Hub, emptied, with carol-hf's token; datasets under this test's media folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    fake_hub.reset()
    fake_hub.tokens[CAROL] = "carol-hf"
    yield fake_hub
    for repo_id in list(fake_hub.repos):
        shutil.rmtree(
            Path(settings.FINETUNE_MODEL_CACHE) / f"models--{repo_id.replace('/', '--')}", ignore_errors=True
        )
    fake_hub.reset()


def _user(token: str | None = None) -> Any:
    user = UserFactory()
    if token:
        accounts.save_hf_token(user, token=token)
    return user


def _client(user: Any) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def _repo(fake: Any, repo_id: str, **meta: Any) -> str:
    repo_id = f"{repo_id}-{time.time_ns() % 10**9}"  # unique per run: the shared model cache outlives runs
    fake.add_model(repo_id, tiny_model_files(vocab=64, hidden=8)[0], **meta)
    return repo_id


def _download(user: Any, repo_id: str) -> BaseModel:
    """What the Download button does: the catalogue row, then the worker's download with the user's token."""
    r = _client(user).post("/api/models/hub/download/", {"repo_id": repo_id}, format="json")
    assert r.status_code == 202, r.content
    hub.run_download(r.json()["id"], user.pk)
    row = BaseModel.objects.get(pk=r.json()["id"])
    assert row.status == "available" and row.added_by == user, row.error
    return row


def _job(user: Any, base: BaseModel) -> Any:
    ds = make_ready_dataset(user)
    return _client(user).post(
        "/api/training/jobs/",
        {
            "name": "t",
            "base_model": base.pk,
            "dataset": ds.pk,
            "method": "sft",
            "weights": "lora",
            "hyperparameters": HYPER,
        },
        format="json",
    )


def _listed(c: APIClient) -> list[int]:
    r = c.get("/api/models/base/", {"page_size": 200})
    assert r.status_code == 200, r.content
    return [m["id"] for m in r.json()["results"]]


def assert_cannot_use(user: Any, base: BaseModel) -> None:
    c = _client(user)
    assert base.pk not in _listed(c)
    assert c.get(f"/api/models/base/{base.pk}/").status_code == 404
    assert c.get(f"/api/models/base/{base.pk}/fit/", {"method": "lora"}).status_code == 404
    assert c.post(f"/api/models/base/{base.pk}/generate/", CHAT, format="json").status_code == 404
    assert not playground.can_use(user, playground.Target("base", base.pk))  # the websocket's check
    r = _job(user, base)
    assert r.status_code == 400 and "base_model" in r.json()["errors"], r.content
    assert not TrainingJob.objects.filter(owner=user).exists()
    assert catalogue.tokenizer_source(user.pk, base.pk) is None  # datasets_app's validate/preview choice


def assert_can_use(user: Any, base: BaseModel) -> None:
    c = _client(user)
    assert base.pk in _listed(c)
    assert c.get(f"/api/models/base/{base.pk}/").json()["repo_id"] == base.repo_id
    assert c.get(f"/api/models/base/{base.pk}/fit/", {"method": "lora"}).status_code == 200
    assert playground.can_use(user, playground.Target("base", base.pk))
    r = _job(user, base)
    assert r.status_code == 201, r.content
    found = catalogue.tokenizer_source(user.pk, base.pk)
    assert found is not None and found[0] == base.repo_id
    with found[1] as folder:
        assert (Path(folder) / "tokenizer.json").is_file()


@pytest.mark.django_db
def test_a_private_model_is_only_for_users_whose_token_reads_the_repo(fake):
    fake.orgs.update({"alice-hf": ["team-org"], "carol-hf": ["team-org"]})
    repo_id = _repo(fake, "team-org/secret-llama", private=True)
    alice, bob, carol, no_token = _user(ALICE), _user(BOB), _user(CAROL), _user()
    base = _download(alice, repo_id)
    assert base.private is True and base.gated is False  # what the Hub's model info said, recorded on the row
    for outsider in (bob, no_token):
        assert_cannot_use(outsider, base)
    assert_can_use(carol, base)  # her own token reads the repo (a member of its organisation)
    assert_can_use(alice, base)
    # The Hub's answer is cached: asking again reads the cache, not the Hub.
    before = len(fake.requests)
    _client(bob).get("/api/models/base/")
    _client(carol).get(f"/api/models/base/{base.pk}/")
    assert len(fake.requests) == before


@pytest.mark.django_db
def test_a_gated_model_is_only_for_users_the_gate_lets_in(fake):
    repo_id = _repo(fake, "acme/gated-llama", gated="manual", gated_allowed={"alice-hf"})
    alice, bob = _user(ALICE), _user(BOB)
    base = _download(alice, repo_id)
    assert base.gated is True and base.private is False
    assert_cannot_use(bob, base)
    # Asking to download it again does not hand bob alice's copy.
    r = _client(bob).post("/api/models/hub/download/", {"repo_id": repo_id}, format="json")
    assert r.status_code == 403 and "gated" in r.json()["detail"]
    # Bob is let in on the Hub: once the cached answer expires, he may use it.
    fake.repos[repo_id].gated_allowed.add("bob-hf")
    assert_cannot_use(bob, base)  # still the cached "no"
    cache.clear()
    assert_can_use(bob, base)


@pytest.mark.django_db
def test_a_public_model_stays_shared_without_asking_the_hub(fake):
    repo_id = _repo(fake, "acme/open-llama")
    alice = _user(ALICE)
    base = _download(alice, repo_id)
    assert base.private is False and base.gated is False
    others = (_user(BOB), _user())
    before = len(fake.requests)
    for other in others:
        assert_can_use(other, base)
    assert not [q for q in fake.requests[before:]], "no Hub call for a public repo"


@pytest.mark.django_db
def test_rows_from_before_the_flags_are_checked_at_use_and_get_them(fake):
    fake.orgs["alice-hf"] = ["team-org"]
    secret = _repo(fake, "team-org/old-secret", private=True)
    public = _repo(fake, "acme/old-public")
    old = {"source": "hub", "status": "available", "parameters": 1000, "private": None}
    secret_row = BaseModel.objects.create(name=secret, repo_id=secret, **old)
    public_row = BaseModel.objects.create(name=public, repo_id=public, **old)
    bob = _user(BOB)
    listed = _listed(_client(bob))
    assert public_row.pk in listed and secret_row.pk not in listed
    assert _client(bob).get(f"/api/models/base/{secret_row.pk}/").status_code == 404
    public_row.refresh_from_db()
    secret_row.refresh_from_db()
    assert public_row.private is False and secret_row.private is None  # learnt what bob's token could tell
    assert _client(_user(ALICE)).get(f"/api/models/base/{secret_row.pk}/").status_code == 200
    secret_row.refresh_from_db()
    assert secret_row.private is True


@pytest.mark.django_db
def test_a_download_over_the_size_cap_is_refused_before_anything_is_stored(
    fake, settings, django_capture_on_commit_callbacks
):
    repo_id = _repo(fake, "acme/too-big")
    size = sum(
        f.size for p, f in fake.repos[repo_id].head.files.items() if p not in ("pytorch_model.bin", "README.md")
    )
    settings.HF_DOWNLOAD_MAX_BYTES = 1000
    user = _user(ALICE)
    info = _client(user).get("/api/models/hub/info/", {"repo_id": repo_id}).json()
    assert info["downloadable"] is False and "HF_DOWNLOAD_MAX_BYTES" in info["problems"][0]
    with django_capture_on_commit_callbacks() as queued:
        r = _client(user).post("/api/models/hub/download/", {"repo_id": repo_id}, format="json")
    assert r.status_code == 400, r.content
    detail = r.json()["detail"]
    assert f"({size} bytes)" in detail and "limit of 1.0 kB (1000 bytes" in detail, detail
    assert not queued and not BaseModel.objects.filter(repo_id=repo_id).exists()
    cached = Path(settings.FINETUNE_MODEL_CACHE) / f"models--{repo_id.replace('/', '--')}"
    assert not list(cached.rglob("*.safetensors"))
    assert not [q for q in fake.requests if q["path"].endswith("model.safetensors")]
    settings.HF_DOWNLOAD_MAX_BYTES = 0  # no cap
    assert _client(user).get("/api/models/hub/info/", {"repo_id": repo_id}).json()["downloadable"] is True


@pytest.mark.django_db
def test_downloaded_snapshots_count_in_storage_usage(db):
    alice, bob = UserFactory(), UserFactory()
    hub_row = {"source": "hub", "status": "available", "private": False}
    BaseModel.objects.create(
        name="a",
        repo_id="acme/a",
        artifact_key="artifacts/base-models/a",
        artifact_size=700,
        added_by=alice,
        **hub_row,
    )
    BaseModel.objects.create(
        name="b", repo_id="acme/b", artifact_key="artifacts/base-models/b", artifact_size=50, added_by=alice, **hub_row
    )
    BaseModel.objects.create(
        name="c", repo_id="acme/c", artifact_key="artifacts/base-models/c", artifact_size=9, added_by=None, **hub_row
    )  # its downloader was deleted
    BaseModel.objects.create(name="d", repo_id="acme/d", status="downloading", source="hub", added_by=bob)
    usage = storage_usage()
    mine = next(r for r in usage["users"] if r["user_id"] == alice.pk)
    assert mine["base_models_bytes"] == 750 and mine["base_models"] == 2 and mine["total_bytes"] == 750
    assert bob.pk not in [r["user_id"] for r in usage["users"]]
    assert usage["totals"]["base_models_bytes"] == 759 and usage["totals"]["total_bytes"] == 759
    assert usage["totals"]["base_models"] == 3


@pytest.mark.django_db
def test_the_training_estimate_refuses_a_base_model_the_user_cannot_read(fake):
    repo_id = _repo(fake, "acme/gated-estimate", gated="auto", gated_allowed={"alice-hf"})
    base = _download(_user(ALICE), repo_id)
    bob = _user(BOB)
    ds = make_ready_dataset(bob)
    r = _client(bob).post(
        "/api/training/estimate/",
        {
            "name": "t",
            "base_model": base.pk,
            "dataset": ds.pk,
            "method": "sft",
            "weights": "lora",
            "hyperparameters": HYPER,
        },
        format="json",
    )
    assert r.status_code == 400 and "base_model" in r.json()["errors"], r.content


@pytest.mark.django_db
def test_dataset_validation_refuses_a_base_model_the_user_cannot_read(fake):
    repo_id = _repo(fake, "acme/gated-tokenizer", gated="auto", gated_allowed={"alice-hf"})
    base = _download(_user(ALICE), repo_id)
    bob = _user(BOB)
    ds = make_ready_dataset(bob)
    r = _client(bob).post(f"/api/datasets/{ds.pk}/validate/", {"base_model": base.pk}, format="json")
    assert r.status_code == 400 and "base_model" in r.json()["errors"], r.content
