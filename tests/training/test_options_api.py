"""GET /api/training/options/: the UI's choices come from their Python source of truth, not from a copy."""

from __future__ import annotations

import pytest
from django.conf import settings

from training.engine.spec import LR_SCHEDULERS

pytestmark = pytest.mark.django_db


def test_options_serve_the_engine_schedulers_and_the_gpu_table(auth_client, api_client):
    r = auth_client.get("/api/training/options/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["lr_schedulers"] == list(LR_SCHEDULERS)
    assert {g["name"]: g["memory_gb"] for g in body["modal_gpus"]} == settings.MODAL_GPU_MEMORY_GB
    assert all(g["usd_per_hour"] == settings.MODAL_GPU_PRICES_USD_PER_HOUR[g["name"]] for g in body["modal_gpus"])
    assert api_client.get("/api/training/options/").status_code in (401, 403)  # signed-in users only
