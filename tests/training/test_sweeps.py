"""Hyperparameter sweeps: a real sweep of three variants trained by a Celery worker ends with every variant ranked
by eval loss and the best one marked and promotable; the whole sweep is refused (nothing created) when a parameter
or a variant says no; variants over the concurrent-jobs limit wait and are queued as slots free up; cancelling a
sweep cancels every variant."""

from __future__ import annotations

import time

import pytest

from accounts.models import User
from models_app.models import BaseModel, FineTunedModel
from tests.clients import post_json, register_session
from tests.factories import TINY_HYPER, make_ready_dataset
from training.models import Sweep, TrainingJob

# Two optimizer steps, an evaluation before and after training (the last one ranks the variants), no checkpoints.
QUICK_HYPER = {**TINY_HYPER, "max_steps": 2, "eval_steps": 0, "save_steps": 0}


def _body(ds, base, **kw):
    return {
        "name": "lr sweep",
        "base_model": base.pk,
        "dataset": ds.pk,
        "method": "sft",
        "weights": "lora",
        "hyperparameters": dict(QUICK_HYPER),
        "strategy": "grid",
        "parameters": {"learning_rate": [1e-4, 1e-3, 3e-3]},
        **kw,
    }


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_sweep_of_three_variants_runs_to_the_end_with_the_best_marked(daphne_url, training_worker):
    s = register_session(daphne_url, "sweeper")
    user = User.objects.get(username="sweeper")
    User.objects.filter(pk=user.pk).update(quota_overrides={"concurrent_jobs": 3})
    ds, base = make_ready_dataset(user), BaseModel.objects.ensure_embedded()

    r = post_json(s, daphne_url, "/api/training/sweeps/", _body(ds, base))
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert sweep["variant_count"] == 3 and sweep["status"] == "running"
    assert sorted(v["params"]["learning_rate"] for v in sweep["variants"]) == [1e-4, 1e-3, 3e-3]

    deadline = time.monotonic() + 420
    while sweep["status"] != "finished":
        assert time.monotonic() < deadline, f"sweep still running: {[v['status'] for v in sweep['variants']]}"
        time.sleep(2)
        sweep = s.get(f"{daphne_url}/api/training/sweeps/{sweep['id']}/").json()

    variants = sweep["variants"]
    assert [v["status"] for v in variants] == ["succeeded"] * 3, [v["error"] for v in variants]
    assert sweep["metric_used"] == "eval_loss"
    assert all(v["eval_loss"] is not None and v["curve"] and v["eval_points"] for v in variants)
    by_rank = sorted(variants, key=lambda v: v["rank"])
    assert [v["rank"] for v in by_rank] == [1, 2, 3]
    assert [v["eval_loss"] for v in by_rank] == sorted(v["eval_loss"] for v in variants)
    best = [v for v in variants if v["best"]]
    assert len(best) == 1 and best[0]["rank"] == 1 and sweep["best_job"] == best[0]["job"]
    assert sweep["finished"] is not None

    # Each variant's job page names its sweep; the best one is promoted into the registry under the sweep's name.
    job = s.get(f"{daphne_url}/api/training/jobs/{best[0]['job']}/").json()
    assert job["sweep"] == sweep["id"] and job["sweep_params"] == best[0]["params"]
    r = post_json(s, daphne_url, f"/api/training/sweeps/{sweep['id']}/promote/", {})
    assert r.status_code == 200, r.text
    promoted = FineTunedModel.objects.get(pk=r.json()["model"])
    assert promoted.job_id == best[0]["job"] and (promoted.name, promoted.version) == ("lr sweep", 1)
    assert promoted.tag == f"best of sweep {sweep['id']}"
    assert Sweep.objects.get(pk=sweep["id"]).promoted_model_id == promoted.pk

    # Deleting the finished sweep keeps its jobs and models.
    r = s.delete(
        f"{daphne_url}/api/training/sweeps/{sweep['id']}/",
        headers={"X-CSRFToken": s.cookies["csrftoken"], "Referer": daphne_url + "/"},
    )
    assert r.status_code == 204, r.text
    assert (
        TrainingJob.objects.filter(owner=user).count() == 3 and FineTunedModel.objects.filter(owner=user).count() == 3
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "status", "needle"),
    [
        (
            {"parameters": {"learning_rate": [1e-4], "lora_r": [4], "lora_alpha": [8], "warmup_ratio": [0.1]}},
            400,
            "at most 3",
        ),
        ({"parameters": {"lr_scheduler_type": ["linear", "cosine"]}}, 400, "only numeric"),
        ({"parameters": {"learning_rat": [1e-4]}}, 400, "Cannot sweep learning_rat"),
        ({"parameters": {"learning_rate": [1e-4, 3]}}, 400, "Variant 2 (learning_rate=3) is refused"),
        ({"strategy": "random", "parameters": {"learning_rate": {"min": 1, "max": 0}}, "max_variants": 2}, 400, "min"),
    ],
    ids=["four-parameters", "not-numeric", "unknown", "invalid-variant", "bad-range"],
)
def test_a_refused_sweep_creates_nothing(auth_client, ready_dataset, embedded_base, changes, status, needle):
    r = auth_client.post("/api/training/sweeps/", _body(ready_dataset, embedded_base, **changes), format="json")
    assert r.status_code == status, r.content
    assert needle in r.json()["detail"]
    assert Sweep.objects.count() == 0 and TrainingJob.objects.count() == 0


@pytest.mark.django_db
def test_a_random_sweep_is_seeded_and_cancelling_it_cancels_every_variant(
    auth_client, user, ready_dataset, embedded_base, other_user, django_capture_on_commit_callbacks
):
    User.objects.filter(pk=user.pk).update(quota_overrides={"concurrent_jobs": 4})
    body = _body(
        ready_dataset,
        embedded_base,
        strategy="random",
        parameters={"learning_rate": {"min": 1e-5, "max": 1e-3, "log": True}, "lora_r": [4, 8, 16]},
        max_variants=4,
        seed=11,
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # queued, never sent to a worker
        r = auth_client.post("/api/training/sweeps/", body, format="json")
    assert r.status_code == 201, r.content
    sweep = r.json()
    assert len(callbacks) == 4 and sweep["variant_count"] == 4
    params = [v["params"] for v in sweep["variants"]]
    assert len({tuple(sorted(p.items())) for p in params}) == 4
    assert all(1e-5 <= p["learning_rate"] <= 1e-3 and p["lora_r"] in (4, 8, 16) for p in params)
    jobs = TrainingJob.objects.filter(sweep_id=sweep["id"]).order_by("id")
    assert [j.hyperparameters["learning_rate"] for j in jobs] == [p["learning_rate"] for p in params]

    # The same seed draws the same variants.
    from training.sweeps import expand_variants

    assert expand_variants("random", body["parameters"], 4, 11) == params

    # Nothing succeeded: nothing to promote; the sweep cannot be deleted while variants are active.
    assert auth_client.post(f"/api/training/sweeps/{sweep['id']}/promote/", {}, format="json").status_code == 409
    assert auth_client.delete(f"/api/training/sweeps/{sweep['id']}/").status_code == 409
    # Another user sees no sweep of this user.
    other = type(auth_client)()
    other.force_authenticate(other_user)
    assert other.get(f"/api/training/sweeps/{sweep['id']}/").status_code == 404
    assert other.post(f"/api/training/sweeps/{sweep['id']}/cancel/").status_code == 404
    assert other.get("/api/training/sweeps/").json()["count"] == 0

    r = auth_client.post(f"/api/training/sweeps/{sweep['id']}/cancel/")
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "finished"
    assert {v["status"] for v in r.json()["variants"]} == {"cancelled"}
    assert set(jobs.values_list("status", flat=True)) == {"cancelled"}
    listed = auth_client.get("/api/training/sweeps/").json()
    assert listed["count"] == 1 and listed["results"][0]["status"] == "finished"
    assert auth_client.delete(f"/api/training/sweeps/{sweep['id']}/").status_code == 204
    assert TrainingJob.objects.filter(owner=user).count() == 4


@pytest.mark.django_db
def test_variants_over_the_concurrent_limit_wait_and_are_queued_as_slots_free_up(
    auth_client, user, ready_dataset, embedded_base, monkeypatch, django_capture_on_commit_callbacks
):
    from training import services

    queued: list[int] = []
    monkeypatch.setattr(services, "enqueue", lambda job: queued.append(job.pk))  # no worker: record what is sent
    User.objects.filter(pk=user.pk).update(quota_overrides={"concurrent_jobs": 2})
    body = _body(ready_dataset, embedded_base, parameters={"learning_rate": [1e-4, 2e-4, 3e-4, 4e-4]})
    r = auth_client.post("/api/training/sweeps/", body, format="json")
    assert r.status_code == 201, r.content
    sweep = r.json()
    jobs = list(TrainingJob.objects.filter(sweep_id=sweep["id"]).order_by("id"))
    assert [j.status for j in jobs] == ["queued", "queued", "waiting", "waiting"]
    assert queued == [jobs[0].pk, jobs[1].pk]  # only the first two went to the queue
    assert sweep["status"] == "running" and sweep["active_count"] == 4
    assert [v["status"] for v in sweep["variants"]].count("waiting") == 2
    # The quota counts the two queued jobs only; a plain job is still refused at the limit.
    me = auth_client.get("/api/auth/me/").json()
    assert me["usage"]["concurrent_jobs"] == 2
    plain = {k: v for k, v in body.items() if k not in ("strategy", "parameters")}
    assert auth_client.post("/api/training/jobs/", plain, format="json").status_code == 429

    # One variant ends (cancelled while queued): its slot goes to the oldest waiting variant.
    with django_capture_on_commit_callbacks(execute=True):
        assert auth_client.post(f"/api/training/jobs/{jobs[0].pk}/cancel/").status_code == 200
    assert TrainingJob.objects.get(pk=jobs[2].pk).status == "queued" and queued[-1] == jobs[2].pk
    assert TrainingJob.objects.get(pk=jobs[3].pk).status == "waiting"
    # A raised limit is caught up by the periodic recovery.
    User.objects.filter(pk=user.pk).update(quota_overrides={"concurrent_jobs": 3})
    with django_capture_on_commit_callbacks(execute=True):
        assert services.recover_expired_leases() == 1
    assert TrainingJob.objects.get(pk=jobs[3].pk).status == "queued" and queued[-1] == jobs[3].pk

    # A waiting job cancels at once; cancelling the sweep cancels the rest.
    User.objects.filter(pk=user.pk).update(quota_overrides={"concurrent_jobs": 1})
    extra = _body(ready_dataset, embedded_base, name="second", parameters={"learning_rate": [5e-4, 6e-4]})
    second = auth_client.post("/api/training/sweeps/", extra, format="json").json()
    waiting = TrainingJob.objects.filter(sweep_id=second["id"])
    assert set(waiting.values_list("status", flat=True)) == {"waiting"}
    r = auth_client.post(f"/api/training/sweeps/{second['id']}/cancel/")
    assert r.status_code == 200 and r.json()["status"] == "finished"
    assert set(waiting.values_list("status", flat=True)) == {"cancelled"}
    r = auth_client.post(f"/api/training/sweeps/{sweep['id']}/cancel/")
    assert {v["status"] for v in r.json()["variants"]} == {"cancelled"}
