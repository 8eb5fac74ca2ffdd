"""Fixtures for export and Ollama tests, loaded for every test as a plugin (tests/conftest.py, ``pytest_plugins``):
the fake Ollama server, settings that keep GGUF verification short, and committed rows for module-scoped fixtures
(one GGUF export shared by the tests of a module instead of one per test)."""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from tests.fakes.ollama import FakeOllama

GOLDEN_PROMPT = "What is the capital of France?"
# One golden prompt and 16 tokens keep each GGUF verification to seconds on 2 cores; production uses the engine's
# three prompts and 24 tokens.
FAST_VERIFY = {"EXPORT_VERIFY_PROMPTS": [GOLDEN_PROMPT], "EXPORT_VERIFY_MAX_NEW_TOKENS": 16}


@pytest.fixture(scope="session")
def fake_ollama_server(tmp_path_factory: Any) -> Iterator[FakeOllama]:
    server = FakeOllama(tmp_path_factory.mktemp("fake-ollama")).start()
    yield server
    server.stop()


@pytest.fixture
def fake_ollama(fake_ollama_server: FakeOllama, settings: Any) -> Iterator[FakeOllama]:
    """The fake Ollama server with OLLAMA_HOST pointing at it; models, requests and failures reset per test."""
    fake_ollama_server.reset()
    settings.OLLAMA_HOST = fake_ollama_server.url
    yield fake_ollama_server
    fake_ollama_server.reset()


@pytest.fixture(scope="session")
def committed_model(django_db_blocker: Any) -> Callable[..., contextlib.AbstractContextManager[Any]]:
    """``with committed_model(adapter_dir) as model:`` (see ``_committed_model``)."""
    return functools.partial(_committed_model, django_db_blocker)


@contextlib.contextmanager
def _committed_model(django_db_blocker: Any, adapter_dir: Path, **overrides: Any) -> Iterator[Any]:
    """A committed owner + fine-tuned model (for module-scoped fixtures) with the fast verification settings active;
    the rows and the owner's stored exports are deleted afterwards."""
    from django.conf import settings

    from models_app.models import BaseModel, FineTunedModel
    from tests.factories import UserFactory

    with override_settings(**FAST_VERIFY, **overrides):
        with django_db_blocker.unblock():
            from models_app.artifacts import store_model_folder

            owner = UserFactory()
            model = FineTunedModel.objects.create(
                owner=owner,
                name="tiny-alpaca",
                version=1,
                base_model=BaseModel.objects.ensure_embedded(),
                method="sft",
                weights="lora",
                **store_model_folder(adapter_dir, f"artifacts/models/test-{owner.pk}"),
                metrics={"train_loss_first": 2.5, "train_loss_last": 1.9},
                hyperparameters={"max_steps": 3, "learning_rate": 1e-3},
            )
        try:
            yield model
        finally:
            with django_db_blocker.unblock():
                type(owner).objects.filter(pk=owner.pk).delete()
            shutil.rmtree(Path(settings.MEDIA_ROOT) / "exports" / str(owner.pk), ignore_errors=True)
