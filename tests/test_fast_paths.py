"""The serving fast paths give the same answers as the plain ones: fast read serializers vs DRF's own
representation, API tokens resolved once per process yet revoked everywhere, backfill pages cached only once final,
and errors under /api/ that are JSON, never a debug page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework import serializers
from rest_framework.test import APIClient

from finetune.serializers import FastReadMixin

pytestmark = pytest.mark.django_db


def _plain(serializer: Any, obj: Any) -> dict[str, Any]:
    """DRF's own representation, skipping FastReadMixin."""
    return dict(super(FastReadMixin, serializer).to_representation(obj))


def _rows(user: Any) -> dict[str, Any]:
    from datasets_app.models import Dataset, DatasetFile
    from models_app.models import BaseModel, FineTunedModel, ModelExport
    from training.models import TrainingJob

    base = BaseModel.objects.ensure_embedded()
    ds = Dataset.objects.create(
        owner=user,
        name="d",
        status="ready",
        format="alpaca",
        column_mapping={"a": "b"},
        validation_settings={"max_length": 512},
        verdict="ok",
        row_count=3,
    )
    Dataset.objects.create(owner=user, name="d", lineage=ds.lineage, version=2, parent=ds, status="processing")
    DatasetFile.objects.create(dataset=ds, file=f"datasets/{user.pk}/x/a.jsonl", kind="jsonl", compressed=True)
    job = TrainingJob.objects.create(
        owner=user,
        name="j",
        base_model=base,
        dataset=ds,
        method="sft",
        weights="lora",
        hyperparameters={"lr": 1e-4},
        status="succeeded",
        progress=1.0,
        eta_s=None,
        started=datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
        finished=datetime(2026, 1, 2, 4, 0, tzinfo=UTC),
        result={"metrics": {}},
    )
    model = FineTunedModel.objects.create(
        owner=user, name="m", base_model=base, job=job, method="sft", weights="lora", metrics={"eval_loss_after": 1.5}
    )
    ModelExport.objects.create(owner=user, model=model, format="adapter")
    return {"base": base, "dataset": ds, "job": job, "model": model}


def test_fast_serializers_match_drf_on_real_rows(user: Any) -> None:
    from dashboard import services as dash
    from dashboard.api.serializers import StatsSerializer
    from datasets_app import services as ds_services
    from datasets_app.api.serializers import DatasetSerializer
    from models_app import services as model_services
    from models_app.api.views import BaseModelSerializer, FineTunedModelSerializer
    from training.api.serializers import JobSerializer
    from training.api.views import JobViewSet

    rows = _rows(user)
    view = JobViewSet(action="list", request=type("R", (), {"user": user, "query_params": {}})())
    cases: list[tuple[serializers.Serializer, Any]] = [
        (JobSerializer(), rows["job"]),  # a plain row (create/cancel responses)
        (JobSerializer(), view.get_queryset().get(pk=rows["job"].pk)),  # the list's annotated row
        (BaseModelSerializer(), rows["base"]),
        (FineTunedModelSerializer(), model_services.owned_models(user).get(pk=rows["model"].pk)),
        *((DatasetSerializer(), d) for d in ds_services.owned_datasets(user)),
        (StatsSerializer(), dash.stats(user)),
    ]
    for serializer, obj in cases:
        fast = serializer.to_representation(obj)
        assert fast == _plain(serializer, obj), type(serializer).__name__
        assert list(fast) == list(_plain(serializer, obj))  # same key order too


def test_a_revoked_token_stops_working_in_every_process(user: Any, settings: Any) -> None:
    from accounts import authentication
    from accounts.models import ApiToken, hash_token_key

    key = "ft_" + "k" * 40
    token = ApiToken.objects.create(user=user, name="ci", prefix=key[:10], key_hash=hash_token_key(key))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/training/jobs/").status_code == 200  # resolved and kept by this process
    # Another process deletes the token: here the row goes without a signal, as if from elsewhere...
    ApiToken.objects.filter(pk=token.pk)._raw_delete(ApiToken.objects.db)
    assert client.get("/api/training/jobs/").status_code == 200  # ...this process still trusts its entry...
    cache.incr("auth:epoch") if cache.get("auth:epoch") else cache.set("auth:epoch", 1, None)  # ...until the epoch
    authentication._epoch_seen = (-1e9, None)  # moves (re-read at most every EPOCH_CHECK_S = 1 s)
    r = client.get("/api/training/jobs/")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_a_deactivated_user_is_refused_at_once_in_the_same_process(user: Any) -> None:
    from accounts.models import ApiToken, hash_token_key

    key = "ft_" + "d" * 40
    ApiToken.objects.create(user=user, name="ci", prefix=key[:10], key_hash=hash_token_key(key))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/auth/me/").status_code == 200
    user.is_active = False
    user.save()
    assert client.get("/api/auth/me/").status_code == 401


def test_a_backfill_page_is_cached_only_once_it_can_no_longer_change(auth_client: Any, user: Any) -> None:
    from training.models import MetricPoint, TrainingJob

    job = _rows(user)["job"]
    now = datetime.now(UTC)
    MetricPoint.objects.bulk_create([MetricPoint(job=job, seq=k, step=k, loss=1.0 / k, time=now) for k in (1, 2, 3)])
    # The job's counter already says 4 (the writer bumps it before inserting the row): the page is not final.
    TrainingJob.objects.filter(pk=job.pk).update(metric_seq=4)
    url = f"/api/training/jobs/{job.pk}/metrics/"
    assert [p["seq"] for p in auth_client.get(url).json()] == [1, 2, 3]
    MetricPoint.objects.create(job=job, seq=4, step=4, loss=0.25, time=now + timedelta(seconds=1))
    assert [p["seq"] for p in auth_client.get(url).json()] == [1, 2, 3, 4]  # not served from a cache
    # Now final: cached. A later point bumps the counter, so the next read uses a new key and sees it.
    MetricPoint.objects.create(job=job, seq=5, step=5, loss=0.2, time=now + timedelta(seconds=2))
    assert [p["seq"] for p in auth_client.get(url).json()] == [1, 2, 3, 4]  # counter still 4: the cached page
    TrainingJob.objects.filter(pk=job.pk).update(metric_seq=5)
    assert [p["seq"] for p in auth_client.get(url).json()] == [1, 2, 3, 4, 5]


def test_an_unexpected_error_under_api_is_json_not_a_debug_page(user: Any, monkeypatch: Any, settings: Any) -> None:
    from training.api import views

    settings.DEBUG = True

    def boom(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(views.JobViewSet, "list", boom)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)
    r = client.get("/api/training/jobs/")
    assert r.status_code == 500 and r["Content-Type"] == "application/json"
    assert r.json() == {"detail": "Internal server error. The error was logged; try again later.", "errors": {}}
    assert b"kaboom" not in r.content and b"Traceback" not in r.content


def test_dashboard_stats_are_cached_per_user_for_their_ttl(
    auth_client: Any, user: Any, other_user: Any, settings: Any
) -> None:
    from datasets_app.models import Dataset

    settings.DASHBOARD_STATS_CACHE_S = 10
    assert auth_client.get("/api/dashboard/stats/").json()["dataset_versions"] == 0
    Dataset.objects.create(owner=user, name="late", status="ready")
    assert auth_client.get("/api/dashboard/stats/").json()["dataset_versions"] == 0  # the cached answer
    other = APIClient()
    other.force_authenticate(other_user)
    assert other.get("/api/dashboard/stats/").json()["dataset_versions"] == 0  # not the first user's entry
    cache.delete(f"dashboard:stats:{user.pk}")  # what the TTL does after 10 s
    assert auth_client.get("/api/dashboard/stats/").json()["dataset_versions"] == 1
