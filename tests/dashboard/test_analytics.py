"""The dashboard API: stats and analytics computed for the requesting user only (numbers recomputed here from the
rows the test made; another user's data is never counted)."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from models_app.models import BaseModel, FineTunedModel
from tests.factories import TrainingJobFactory, make_ready_dataset

pytestmark = pytest.mark.django_db


def _result(train_loss, eval_loss=None):
    return {
        "status": "succeeded",
        "final_step": 6,
        "total_steps": 6,
        "metrics": {"train_loss_last": train_loss, "eval_loss_after": eval_loss},
    }


@pytest.fixture
def world(user, other_user, settings, tmp_path):
    """Jobs of the user over 45 days, and a noisy other user."""
    settings.MEDIA_ROOT = tmp_path / "media"
    now = timezone.now()
    day = timedelta(days=1)
    # (days ago created, status, method, compute_seconds, days ago finished, train loss, eval loss)
    spec = [
        (0, "running", "sft", 0, None, None, None),
        (0, "succeeded", "sft", 1800, 0, 0.8, 1.1),
        (0, "failed", "sft", 120, 0, None, None),
        (2, "succeeded", "dpo", 3600, 1, 0.5, None),
        (2, "succeeded", "sft", 900, 2, 1.2, 1.3),
        (5, "cancelled", "orpo", 300, 5, None, None),
        (5, "failed", "dpo", 60, 5, None, None),
        (40, "succeeded", "sft", 7200, 40, 0.1, 0.2),  # outside a 30-day window
        (10, "queued", "sft", 0, None, None, None),
        (12, "succeeded", "orpo", 600, 11, 0.9, 0.95),
        (3, "succeeded", "sft", 300, 3, None, None),  # no metrics recorded
        (1, "failed", "sft", 30, 1, None, None),
    ]
    jobs = []
    for i, (created, status, method, secs, finished, loss, eval_loss) in enumerate(spec):
        jobs.append(
            TrainingJobFactory(
                owner=user,
                status=status,
                method=method,
                compute_seconds=secs,
                name=f"job{i}",
                created=now - created * day - timedelta(minutes=i),
                finished=(now - finished * day) if finished is not None else None,
                result=_result(loss, eval_loss) if loss is not None else ({} if status == "succeeded" else None),
                running_since=now - timedelta(minutes=3) if status == "running" else None,
                **({"progress": 0.25, "current_step": 3, "total_steps": 12} if status == "running" else {}),
            )
        )
    make_ready_dataset(user, name="second")  # two datasets for the user
    base = BaseModel.objects.ensure_embedded()
    FineTunedModel.objects.create(
        owner=user,
        name="m",
        version=1,
        base_model=base,
        method="sft",
        weights="lora",
    )
    # The other user: lots of everything, all of it today.
    for i in range(6):
        TrainingJobFactory(
            owner=other_user,
            status="succeeded",
            method="sft",
            compute_seconds=99999,
            result=_result(9.0, 9.0),
            name=f"other{i}",
        )
    TrainingJobFactory(owner=other_user, status="running", running_since=now)
    for v in (1, 2):
        FineTunedModel.objects.create(
            owner=other_user, name="o", version=v, base_model=base, method="sft", weights="lora"
        )
    return {"spec": spec, "jobs": jobs, "now": now}


def test_stats_count_only_the_users_things(auth_client, world):
    body = auth_client.get("/api/dashboard/stats/").json()
    spec = world["spec"]
    assert body["datasets"] == 2 and body["models"] == 1
    by_status = {}
    for row in spec:
        by_status[row[1]] = by_status.get(row[1], 0) + 1
    assert body["jobs"]["total"] == len(spec)
    assert {k: v for k, v in body["jobs"]["by_status"].items() if v} == by_status
    assert set(body["jobs"]["by_status"]) >= {"queued", "running", "succeeded", "failed", "cancelled"}
    ok, bad = by_status["succeeded"], by_status["failed"]
    assert body["success_rate"] == pytest.approx(round(ok / (ok + bad), 4))
    running = {j["name"]: j for j in body["running_jobs"]}
    assert set(running) == {"job0", "job8"}  # running and queued, never the other user's
    assert running["job0"]["progress"] == 0.25 and running["job0"]["total_steps"] == 12
    recent = [j["name"] for j in body["recent_jobs"]]
    expected = [f"job{i}" for i, _ in sorted(enumerate(spec), key=lambda p: (p[1][0], p[0]))][:10]
    assert recent == expected
    assert next(j for j in body["recent_jobs"] if j["name"] == "job1")["final_loss"] == 0.8
    assert body["quota"]["usage"]["concurrent_jobs"] == 2
    assert body["quota"]["usage"]["gpu_minutes_local_this_month"] >= 0


@pytest.mark.parametrize("days", [30, 7])
def test_analytics_recompute(auth_client, world, days):
    body = auth_client.get(f"/api/dashboard/analytics/?days={days}").json()
    now = world["now"]
    today = now.astimezone(UTC).date()
    dates = [today - timedelta(days=d) for d in range(days - 1, -1, -1)]
    assert body["days"] == days and body["since"] == dates[0].isoformat()
    assert [p["date"] for p in body["jobs_per_day"]] == [d.isoformat() for d in dates]

    created_on: dict = {}
    hours_on: dict = {}
    ok = bad = 0
    losses: dict = {}
    for job in world["jobs"]:
        c = job.created.astimezone(UTC).date()
        if c in dates:
            entry = created_on.setdefault(c.isoformat(), {"count": 0, "succeeded": 0, "failed": 0})
            entry["count"] += 1
            if job.status in ("succeeded", "failed"):
                entry[job.status] += 1
        if job.finished is not None and job.finished.astimezone(UTC).date() in dates:
            f = job.finished.astimezone(UTC).date().isoformat()
            hours_on[f] = hours_on.get(f, 0.0) + job.compute_seconds / 3600
            ok += job.status == "succeeded"
            bad += job.status == "failed"
            if job.status == "succeeded":
                m = (job.result or {}).get("metrics") or {}
                entry = losses.setdefault(job.method, {"n": 0, "t": [], "e": []})
                entry["n"] += 1
                if m.get("train_loss_last") is not None:
                    entry["t"].append(m["train_loss_last"])
                if m.get("eval_loss_after") is not None:
                    entry["e"].append(m["eval_loss_after"])

    got_created = {
        p["date"]: {k: p[k] for k in ("count", "succeeded", "failed")} for p in body["jobs_per_day"] if p["count"]
    }
    assert got_created == created_on
    got_hours = {p["date"]: p["hours"] for p in body["training_hours_per_day"] if p["hours"]}
    assert got_hours == pytest.approx({k: round(v, 4) for k, v in hours_on.items()})
    assert body["training_hours"] == pytest.approx(sum(hours_on.values()), abs=1e-3)
    assert body["jobs_finished"] == {"succeeded": ok, "failed": bad}
    assert body["success_rate"] == pytest.approx(round(ok / (ok + bad), 4))

    def mean(v):
        return round(sum(v) / len(v), 4) if v else None

    expected = [
        {"method": k, "jobs": v["n"], "mean_final_train_loss": mean(v["t"]), "mean_final_eval_loss": mean(v["e"])}
        for k, v in sorted(losses.items())
    ]
    assert body["final_loss_by_method"] == expected
    # The other user's 9.0 losses and 99999 s jobs never show up.
    assert all(row["mean_final_train_loss"] != 9.0 for row in body["final_loss_by_method"])
    assert body["training_hours"] < 27


def test_analytics_for_a_user_with_nothing(api_client, other_user, world):
    from tests.factories import UserFactory

    fresh = UserFactory()
    api_client.force_authenticate(fresh)
    body = api_client.get("/api/dashboard/analytics/").json()
    assert body["days"] == 30 and body["success_rate"] is None and body["final_loss_by_method"] == []
    assert sum(p["count"] for p in body["jobs_per_day"]) == 0 and body["training_hours"] == 0
    stats = api_client.get("/api/dashboard/stats/").json()
    assert stats["jobs"]["total"] == 0 and stats["datasets"] == 0 and stats["success_rate"] is None


@pytest.mark.parametrize(
    ("days", "needle"), [("0", "between 1 and 365"), ("366", "between 1 and 365"), ("abc", "whole number")]
)
def test_bad_days_get_a_clear_400(auth_client, days, needle):
    r = auth_client.get(f"/api/dashboard/analytics/?days={days}")
    assert r.status_code == 400 and needle in r.json()["detail"] and "days" in r.json()["errors"]


def test_dashboard_needs_a_signed_in_user(api_client):
    assert api_client.get("/api/dashboard/stats/").status_code in (401, 403)
    assert api_client.get("/api/dashboard/analytics/").status_code in (401, 403)
