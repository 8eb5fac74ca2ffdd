"""The engine never imports Django (or any web-side package), and importing it stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = (
    "django",
    "celery",
    "channels",
    "rest_framework",
    "daphne",
    "accounts",
    "datasets_app",
    "models_app",
    "dashboard",
    "finetune",
)
CODE = """
import json, sys
import {module}
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


@pytest.mark.parametrize(
    "module",
    [
        "training.engine",
        "training.engine.run",
        "training.engine.cli",
        "training.engine.trainers.sft",
        "training.engine.trainers.dpo",
        "training.engine.trainers.orpo",
        "training.engine.callbacks.hf",
        "training.engine.checkpoints",
        "training.engine.device",
        "training.engine.memory",
        "training.engine.trainers",
    ],
)
def test_engine_modules_do_not_import_django(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(module=module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)


def test_importing_the_engine_does_not_load_torch() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(module="training.engine")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded & {"torch", "transformers", "peft", "trl", "unsloth"}
