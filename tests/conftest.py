"""Shared fixtures: real PostgreSQL (pytest-django), real Redis (test database numbers), real worker/daphne processes,
and local fakes for the services we cannot run here (the Hugging Face Hub)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.hub import FakeHub
from tests.processes import server_env, start_celery_worker, start_daphne, stop

# Fixtures shared across the tree: a trained adapter and fine-tuned model rows; the fake Ollama and export helpers.
pytest_plugins = ["tests.plugins.models", "tests.plugins.ollama"]

ROOT = Path(__file__).resolve().parent.parent
HUB_TOKENS = {"hf_validTokenForAlice1234": "alice-hf", "hf_validTokenForBob5678": "bob-hf"}
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "test-artifacts"))
# Every test evaluates its base model itself: the host cache of that evaluation (training/engine/eval_cache.py) is
# turned on only by its own tests, so no test's events depend on which tests ran before it. Worker processes inherit it.
os.environ.setdefault("FINETUNE_EVAL_CACHE", "0")


def _django_ready() -> bool:
    """False when run with `-p no:django` (engine-only runs): then the web fixtures stand aside."""
    from django.conf import settings

    return bool(settings.configured)


def _redis(db: int) -> Any:
    import redis
    from django.conf import settings

    base = settings.CELERY_BROKER_URL.rsplit("/", 1)[0]
    return redis.Redis.from_url(f"{base}/{db}")


@pytest.fixture(scope="session", autouse=True)
def _clean_test_redis() -> None:
    """Start from empty test Redis databases (broker, channels, cache); never the development ones."""
    if not _django_ready():
        return
    from django.conf import settings

    assert settings.TESTING and settings.REDIS_BROKER_DB != 0, "tests must not use the development Redis numbers"
    for db in (settings.REDIS_BROKER_DB, settings.REDIS_CHANNELS_DB, settings.REDIS_CACHE_DB):
        _redis(db).flushdb()


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """Throttle counters live in the cache: every test starts with none."""
    if not _django_ready():
        return
    from django.conf import settings

    _redis(settings.REDIS_CACHE_DB).flushdb()


@pytest.fixture
def password() -> str:
    from tests.factories import PASSWORD

    return PASSWORD


@pytest.fixture
def user(db: Any) -> Any:
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def other_user(db: Any) -> Any:
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def api_client() -> Any:
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def auth_client(user: Any) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture(scope="session")
def fake_hub_server() -> Iterator[FakeHub]:
    hub = FakeHub().start()
    hub.tokens = dict(HUB_TOKENS)
    yield hub
    hub.stop()


@pytest.fixture
def fake_hub(fake_hub_server: FakeHub, settings: Any) -> Iterator[FakeHub]:
    """The fake Hub, with HF_ENDPOINT pointing at it and two known tokens."""
    fake_hub_server.tokens = dict(HUB_TOKENS)
    fake_hub_server.requests.clear()
    fake_hub_server.fail_with = None
    settings.HF_ENDPOINT = fake_hub_server.url
    yield fake_hub_server


@pytest.fixture(scope="session")
def fake_s3_server(tmp_path_factory: Any) -> Iterator[Any]:
    """moto's S3 server on loopback, with a fresh bucket (tests/fakes/s3.py)."""
    from tests.fakes.s3 import start_fake_s3, stop_fake_s3

    s3 = start_fake_s3(tmp_path_factory.mktemp("s3") / "moto.log")
    yield s3
    stop_fake_s3(s3)


@pytest.fixture
def s3_storage(fake_s3_server: Any, settings: Any, tmp_path: Path) -> Any:
    """This test's default storage is the fake S3 bucket (and its host cache a folder of its own)."""
    for name, value in fake_s3_server.settings().items():
        setattr(settings, name, value)
    settings.ARTIFACT_CACHE_DIR = tmp_path / "artifact-cache"
    return fake_s3_server


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def test_db_name(django_db_setup: Any) -> str:
    from django.db import connection

    return str(connection.settings_dict["NAME"])


@pytest.fixture(scope="session")
def celery_worker_process(test_db_name: str, fake_hub_server: FakeHub, tmp_path_factory: Any) -> Iterator[str]:
    """A real `celery worker` process on the `default` queue, test broker and database; yields its node name.
    (Training tests start their own `training` workers, so they can kill them.)"""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc, node = start_celery_worker(server_env(test_db_name, HF_ENDPOINT=fake_hub_server.url), log, queues="default")
    yield node
    stop(proc)


@pytest.fixture(scope="session")
def daphne_url(test_db_name: str, fake_hub_server: FakeHub, tmp_path_factory: Any) -> Iterator[str]:
    """daphne serving the whole ASGI app (HTTP + websockets) on the test database; yields its base URL."""
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    proc, port = start_daphne(server_env(test_db_name, HF_ENDPOINT=fake_hub_server.url), log)
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture(scope="session")
def media_root_for_servers() -> Path:
    """Where server processes started by tests store files (settings.MEDIA_ROOT under FINETUNE_TESTING)."""
    from django.conf import settings

    return Path(settings.MEDIA_ROOT)
