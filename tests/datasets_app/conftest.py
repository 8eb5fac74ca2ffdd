from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.datasets_dir import DATASETS

SHARED = DATASETS


@pytest.fixture
def shared_datasets() -> Path:
    return SHARED


@pytest.fixture
def media_root(settings, tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    yield root
    shutil.rmtree(root, ignore_errors=True)


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]
