"""Query budgets: every list and detail endpoint makes a bounded number of queries whatever the page size and however
many rows the user has (no per-row queries). Each endpoint is read with a little data and a small page, then with
five times the data and a large page; both must make the same number of queries, within the endpoint's budget."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db

# Queries per request (authentication is forced, so these are the view's own). A change that adds a per-row query
# fails the equality check below; one that adds a fixed query fails here, on purpose: say why in the budget.
BUDGETS: dict[str, int] = {
    "me": 5,
    "me_quotas": 5,
    "tokens": 2,
    "hf_token": 0,  # me: the user's usage (jobs, storage, monthly minutes)
    "datasets": 3,
    "dataset": 2,
    "dataset_versions": 4,
    "dataset_report": 2,  # lists: count, rows, files
    "base_models": 3,
    "base_model": 2,  # the embedded model's catalogue row is made if missing
    "models": 2,
    "model": 2,
    "model_versions": 2,
    "model_compare": 4,
    "exports": 3,
    "export": 1,
    "pushes": 2,
    "push": 1,
    "ollama_imports": 3,
    "ollama_import": 1,
    "jobs": 2,
    "job": 1,
    "job_metrics": 2,
    "job_logs": 2,
    "presets": 0,
    "stats": 8,
    "analytics": 4,  # both cached per user for a few seconds outside tests
}


def _grow(user: Any, n: int, state: dict[str, Any]) -> None:
    """Add n datasets (a lineage of versions), jobs with metric points and log lines, fine-tuned models with
    exports, pushes and imports, and API tokens."""
    from accounts.models import ApiToken, hash_token_key
    from datasets_app.models import Dataset, DatasetFile
    from models_app.models import BaseModel, FineTunedModel, HubPush, ModelExport, OllamaImport
    from training.models import LogLine, MetricPoint, TrainingJob

    base = BaseModel.objects.ensure_embedded()
    now = datetime.now(UTC)
    lineage = state.setdefault("lineage", uuid.uuid4())
    start = Dataset.objects.filter(lineage=lineage).count()
    for i in range(n):
        ds = Dataset.objects.create(
            owner=user,
            name="data",
            lineage=lineage,
            version=start + i + 1,
            status="ready",
            format="alpaca",
            report={"verdict": "ok"},
            verdict="ok",
            row_count=10,
        )
        DatasetFile.objects.create(dataset=ds, file=f"datasets/{user.pk}/x/{ds.pk}.jsonl", kind="jsonl")
        DatasetFile.objects.create(
            dataset=ds, role="validation", file=f"datasets/{user.pk}/x/{ds.pk}v.jsonl", kind="jsonl"
        )
        state.setdefault("dataset", ds)
        job = TrainingJob.objects.create(
            owner=user,
            name=f"job {i}",
            base_model=base,
            dataset=ds,
            method="sft",
            weights="lora",
            status="succeeded",
            metric_seq=n,
            log_seq=n,
            result={"metrics": {"train_loss_last": 1.0}},
            finished=now,
        )
        state.setdefault("job", job)
        MetricPoint.objects.bulk_create(
            [
                MetricPoint(
                    job=state["job"], seq=state.get("seq", 0) + k + 1, step=k, loss=1.0, time=now, extra={"mfu": 0.1}
                )
                for k in range(n)
            ]
        )
        LogLine.objects.bulk_create(
            [LogLine(job=state["job"], seq=state.get("seq", 0) + k + 1, line="x", time=now) for k in range(n)]
        )
        state["seq"] = state.get("seq", 0) + n
        TrainingJob.objects.filter(pk=state["job"].pk).update(metric_seq=state["seq"], log_seq=state["seq"])
        version = FineTunedModel.objects.filter(owner=user, name="m").count() + 1
        model = FineTunedModel.objects.create(
            owner=user,
            name="m",
            version=version,
            base_model=base,
            job=job,
            method="sft",
            weights="lora",
            metrics={"eval_loss_after": 1.0},
        )
        state.setdefault("model", model)
        state["other_model"] = model
        for target in (state["model"], model):
            state["export"] = ModelExport.objects.create(owner=user, model=target, format="adapter")
            state["push"] = HubPush.objects.create(owner=user, model=target, repo_id="me/m")
            state["import"] = OllamaImport.objects.create(owner=user, model=target, ollama_name="m")
        key = f"ft_{uuid.uuid4().hex}"
        ApiToken.objects.create(user=user, name=f"t{i}", prefix=key[:10], key_hash=hash_token_key(key))


ENDPOINTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "me": lambda s: "/api/auth/me/",
    "me_quotas": lambda s: "/api/auth/me/quotas/",
    "tokens": lambda s: "/api/auth/tokens/",
    "hf_token": lambda s: "/api/auth/hf-token/",
    "datasets": lambda s: "/api/datasets/",
    "dataset": lambda s: f"/api/datasets/{s['dataset'].pk}/",
    "dataset_versions": lambda s: f"/api/datasets/{s['dataset'].pk}/versions/",
    "dataset_report": lambda s: f"/api/datasets/{s['dataset'].pk}/report/",
    "base_models": lambda s: "/api/models/base/",
    "base_model": lambda s: f"/api/models/base/{s['job'].base_model_id}/",
    "models": lambda s: "/api/models/",
    "model": lambda s: f"/api/models/{s['model'].pk}/",
    "model_versions": lambda s: f"/api/models/{s['model'].pk}/versions/",
    "model_compare": lambda s: f"/api/models/{s['model'].pk}/compare/?other={s['other_model'].pk}",
    "exports": lambda s: f"/api/models/{s['model'].pk}/exports/",
    "export": lambda s: f"/api/models/exports/{s['export'].pk}/",
    "pushes": lambda s: f"/api/models/{s['model'].pk}/pushes/",
    "push": lambda s: f"/api/models/push-hub/{s['push'].pk}/",
    "ollama_imports": lambda s: f"/api/models/{s['model'].pk}/ollama-imports/",
    "ollama_import": lambda s: f"/api/models/ollama-imports/{s['import'].pk}/",
    "jobs": lambda s: "/api/training/jobs/",
    "job": lambda s: f"/api/training/jobs/{s['job'].pk}/",
    "job_metrics": lambda s: f"/api/training/jobs/{s['job'].pk}/metrics/?after_seq=0",
    "job_logs": lambda s: f"/api/training/jobs/{s['job'].pk}/logs/?after_seq=0",
    "presets": lambda s: "/api/training/presets/",
    "stats": lambda s: "/api/dashboard/stats/",
    "analytics": lambda s: "/api/dashboard/analytics/?days=30",
}


def _count(client: Any, url: str, page_size: int) -> tuple[int, Any]:
    sep = "&" if "?" in url else "?"
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"{url}{sep}page_size={page_size}")
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    return len(ctx.captured_queries), ctx.captured_queries


def test_every_list_and_detail_endpoint_has_a_bounded_query_count(auth_client: Any, user: Any) -> None:
    state: dict[str, Any] = {}
    _grow(user, 2, state)
    small = {name: _count(auth_client, url(state), 2) for name, url in ENDPOINTS.items()}
    _grow(user, 10, state)
    large = {name: _count(auth_client, url(state), 100) for name, url in ENDPOINTS.items()}
    problems = []
    for name in ENDPOINTS:
        (n_small, _), (n_large, queries) = small[name], large[name]
        if n_large != n_small:
            problems.append(f"{name}: {n_small} queries with little data, {n_large} with more (a per-row query)")
        elif n_large > BUDGETS[name]:
            problems.append(
                f"{name}: {n_large} queries, budget {BUDGETS[name]}: " + " | ".join(q["sql"][:80] for q in queries)
            )
    assert not problems, "\n".join(problems) + f"\nall: { {k: v[0] for k, v in large.items()} }"


def test_the_metrics_backfill_pages_by_seq_and_caps_a_page(auth_client: Any, user: Any, settings: Any) -> None:
    settings.METRICS_PAGE_MAX = 7
    state: dict[str, Any] = {}
    _grow(user, 4, state)  # 16 points on the first job
    url = f"/api/training/jobs/{state['job'].pk}/metrics/"
    first = auth_client.get(url, {"after_seq": 0}).json()
    assert [p["seq"] for p in first] == list(range(1, 8))
    assert first[0]["mfu"] == 0.1 and first[0]["time"].endswith("Z") and "extra" not in first[0]
    rest = auth_client.get(url, {"after_seq": first[-1]["seq"], "limit": 100}).json()
    assert [p["seq"] for p in rest] == list(range(8, 15))
    assert len(auth_client.get(url, {"after_seq": 0, "limit": 3}).json()) == 3
    bad = auth_client.get(url, {"after_seq": "x"})
    assert bad.status_code == 400 and "after_seq" in bad.json()["detail"]
