"""The fine-tuned model registry: versions and the latest flag, filters, rename/tag/notes, compare (hyperparameters,
dataset, metrics, eval report, both loss curves), delete with artifacts, and isolation between users."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from datasets_app.models import Dataset
from models_app.models import FineTunedModel, ModelExport, TaskStatus
from tests.factories import DatasetFactory, TrainingJobFactory
from training.models import MetricPoint, TrainingJob

pytestmark = pytest.mark.django_db

URL = "/api/models/"


def succeeded_job(
    owner,
    *,
    name="tiny-alpaca",
    dataset=None,
    losses=(2.5, 2.1, 1.8),
    eval_losses=(2.2,),
    lr=1e-3,
    sha="ab" * 32,
    comparison=None,
):
    """A succeeded job with a dataset and metric points, as the training pipeline leaves it."""
    dataset = dataset or DatasetFactory(owner=owner, name="alpaca demo", row_count=8, rows=False)
    job = TrainingJobFactory(
        owner=owner,
        name=name,
        dataset=dataset,
        hyperparameters={"learning_rate": lr, "max_steps": len(losses), "lora_r": 8},
        status=TrainingJob.Status.SUCCEEDED,
        dataset_sha256=sha,
        result={"status": "succeeded", "comparison": comparison},
    )
    now = timezone.now()
    seq = 0
    for step, loss in enumerate(losses, start=1):
        seq += 1
        MetricPoint.objects.create(
            job=job, seq=seq, step=step, loss=loss, learning_rate=lr, time=now + timedelta(seconds=step)
        )
    for value in eval_losses:
        seq += 1
        MetricPoint.objects.create(job=job, seq=seq, kind="eval", step=len(losses), eval_loss=value, time=now)
    seq += 1  # a point without any loss (e.g. memory only) is not part of the curve
    MetricPoint.objects.create(job=job, seq=seq, step=len(losses), memory_mb=900.0, time=now)
    return job


def _results(response):
    body = response.json()
    return body["results"] if isinstance(body, dict) and "results" in body else body


def test_versions_are_listed_newest_first_with_the_latest_flag(auth_client, user, make_finetuned):
    v1 = make_finetuned(user)
    v2 = make_finetuned(user)
    v3 = make_finetuned(user)
    other_name = make_finetuned(user, name="other")
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)

    r = auth_client.get(f"{URL}{v1.pk}/versions/")
    assert r.status_code == 200, r.content
    rows = r.json()
    assert [m["version"] for m in rows] == [3, 2, 1]
    assert [m["latest"] for m in rows] == [True, False, False]
    assert all(m["name"] == "tiny-alpaca" and m["latest_version"] == 3 for m in rows)
    assert other_name.pk not in [m["id"] for m in rows]

    listed = {m["id"]: m for m in _results(auth_client.get(URL))}
    assert listed[v3.pk]["latest"] and not listed[v1.pk]["latest"] and listed[other_name.pk]["latest"]
    assert listed[v1.pk]["base_model_repo_id"] == "embedded/SmolLM2-135M-Instruct"
    assert listed[v1.pk]["exports_count"] == 0 and listed[v1.pk]["is_adapter"] is True


def test_list_filters_by_name_base_model_and_latest(auth_client, user, make_finetuned):
    make_finetuned(user)
    newest = make_finetuned(user)
    other = make_finetuned(user, name="support-bot", tag="prod")
    base_id = newest.base_model_id

    assert {m["id"] for m in _results(auth_client.get(URL, {"latest": "true"}))} == {newest.pk, other.pk}
    assert [m["version"] for m in _results(auth_client.get(URL, {"name": "tiny-alpaca"}))] == [2, 1]
    assert [m["id"] for m in _results(auth_client.get(URL, {"search": "prod"}))] == [other.pk]
    assert len(_results(auth_client.get(URL, {"base_model": base_id}))) == 3
    assert _results(auth_client.get(URL, {"base_model": base_id + 999})) == []
    r = auth_client.get(URL, {"base_model": "smol"})
    assert r.status_code == 400 and "base_model" in r.json()["errors"]


def test_detail_carries_job_dataset_eval_report_and_loss_curve(auth_client, user, make_finetuned):
    job = succeeded_job(user, comparison={"summary": {"prompts": 2, "prompts_changed": 1}})
    model = make_finetuned(
        user, job=job, metrics={"train_loss_last": 1.8, "eval_loss_before": 2.4, "eval_loss_after": 2.2}
    )
    body = auth_client.get(f"{URL}{model.pk}/").json()
    assert body["job"] == job.pk and body["job_status"] == "succeeded"
    assert (body["dataset"], body["dataset_name"], body["dataset_version"]) == (job.dataset_id, "alpaca demo", 1)
    assert body["dataset_sha256"] == "ab" * 32
    assert body["eval_report"]["eval_loss_after"] == 2.2
    assert body["eval_report"]["comparison"]["summary"]["prompts_changed"] == 1
    assert [p["loss"] for p in body["loss_curve"] if p["kind"] == "metric"] == [2.5, 2.1, 1.8]
    assert [p["eval_loss"] for p in body["loss_curve"] if p["kind"] == "eval"] == [2.2]


def test_compare_shows_differences_datasets_metrics_and_both_loss_curves(auth_client, user, make_finetuned):
    ds = Dataset.objects.create(owner=user, name="alpaca demo", status=Dataset.Status.READY, format="alpaca")
    job_a = succeeded_job(user, dataset=ds, losses=(2.5, 2.0), lr=1e-3)
    job_b = succeeded_job(
        user,
        dataset=ds,
        losses=(2.6, 2.2, 1.7, 1.5),
        eval_losses=(2.3, 1.9),
        lr=2e-4,
        comparison={"summary": {"finetuned_loss": 1.9}},
    )
    a = make_finetuned(
        user,
        job=job_a,
        hyperparameters=job_a.hyperparameters,
        metrics={"train_loss_last": 2.0, "eval_loss_after": 2.2},
    )
    b = make_finetuned(
        user,
        job=job_b,
        hyperparameters=job_b.hyperparameters,
        metrics={"train_loss_last": 1.5, "eval_loss_after": 1.9},
    )

    r = auth_client.get(f"{URL}{a.pk}/compare/", {"other": b.pk})
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["a"]["model"]["id"], body["b"]["model"]["id"]) == (a.pk, b.pk)
    assert (body["a"]["model"]["version"], body["b"]["model"]["version"]) == (1, 2)

    hyper = {row["name"]: row for row in body["hyperparameters"]}
    assert hyper["learning_rate"] == {"name": "learning_rate", "a": 1e-3, "b": 2e-4, "changed": True}
    assert hyper["max_steps"]["changed"] and not hyper["lora_r"]["changed"]
    metrics = {row["name"]: row for row in body["metrics"]}
    assert metrics["train_loss_last"]["delta"] == pytest.approx(-0.5)
    assert metrics["eval_loss_after"]["changed"]
    assert {row["name"] for row in body["setup"]} >= {"base_model", "method", "weights"}

    assert body["same_dataset"] is True
    assert body["a"]["dataset"] == {
        "id": ds.pk,
        "name": "alpaca demo",
        "version": 1,
        "format": "alpaca",
        "rows": 0,
        "sha256": "ab" * 32,
    }
    assert body["b"]["eval_report"]["comparison"]["summary"]["finetuned_loss"] == 1.9
    curve_a = [(p["step"], p["loss"]) for p in body["a"]["loss_curve"] if p["kind"] == "metric"]
    curve_b = [(p["step"], p["loss"]) for p in body["b"]["loss_curve"] if p["kind"] == "metric"]
    assert curve_a == [(1, 2.5), (2, 2.0)]
    assert curve_b == [(1, 2.6), (2, 2.2), (3, 1.7), (4, 1.5)]
    assert [p["eval_loss"] for p in body["b"]["loss_curve"] if p["kind"] == "eval"] == [2.3, 1.9]
    assert body["a"]["job"]["id"] == job_a.pk


def test_compare_needs_a_valid_other(auth_client, user, make_finetuned):
    a = make_finetuned(user)
    r = auth_client.get(f"{URL}{a.pk}/compare/")
    assert r.status_code == 400 and "other" in r.json()["detail"]
    r = auth_client.get(f"{URL}{a.pk}/compare/", {"other": a.pk + 1000})
    assert r.status_code == 404


def test_compare_without_jobs_still_answers(auth_client, user, make_finetuned):
    a, b = make_finetuned(user), make_finetuned(user)
    body = auth_client.get(f"{URL}{a.pk}/compare/", {"other": b.pk}).json()
    assert body["a"]["loss_curve"] == [] and body["a"]["dataset"] is None and body["same_dataset"] is False


def test_patch_tag_and_notes_of_one_version(auth_client, user, make_finetuned):
    v1, v2 = make_finetuned(user), make_finetuned(user)
    r = auth_client.patch(f"{URL}{v1.pk}/", {"tag": " baseline ", "notes": "first try\nlr 1e-3"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["tag"] == "baseline" and r.json()["notes"] == "first try\nlr 1e-3"
    v2.refresh_from_db()
    assert v2.tag == "" and v2.notes == ""


def test_rename_moves_every_version_and_keeps_numbers(auth_client, user, make_finetuned):
    v1, v2 = make_finetuned(user), make_finetuned(user)
    untouched = make_finetuned(user, name="other")
    r = auth_client.patch(f"{URL}{v1.pk}/", {"name": "alpaca-helper"}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["name"] == "alpaca-helper" and r.json()["version"] == 1 and r.json()["latest"] is False
    assert sorted(FineTunedModel.objects.filter(name="alpaca-helper").values_list("version", flat=True)) == [1, 2]
    assert not FineTunedModel.objects.filter(name="tiny-alpaca").exists()
    untouched.refresh_from_db()
    assert untouched.name == "other"
    rows = auth_client.get(f"{URL}{v2.pk}/versions/").json()
    assert [(m["name"], m["version"], m["latest"]) for m in rows] == [
        ("alpaca-helper", 2, True),
        ("alpaca-helper", 1, False),
    ]


def test_rename_onto_a_used_name_is_refused_clearly(auth_client, user, other_user, make_finetuned):
    mine = make_finetuned(user)
    make_finetuned(user, name="taken")
    make_finetuned(other_user, name="theirs")  # another user's names do not clash with mine
    r = auth_client.patch(f"{URL}{mine.pk}/", {"name": "taken"}, format="json")
    assert r.status_code == 409
    assert "already have a model named 'taken'" in r.json()["detail"] and "name" in r.json()["errors"]
    mine.refresh_from_db()
    assert mine.name == "tiny-alpaca"
    assert auth_client.patch(f"{URL}{mine.pk}/", {"name": "theirs"}, format="json").status_code == 200
    r = auth_client.patch(f"{URL}{mine.pk}/", {"name": "   "}, format="json")
    assert r.status_code == 400 and "name" in r.json()["errors"]


def test_read_only_fields_are_ignored_by_patch(auth_client, user, make_finetuned):
    model = make_finetuned(user)
    r = auth_client.patch(f"{URL}{model.pk}/", {"version": 9, "metrics": {}, "tag": "x"}, format="json")
    assert r.status_code == 200
    model.refresh_from_db()
    assert model.version == 1 and model.metrics and model.tag == "x"


def test_delete_removes_the_stored_model_and_export_files(
    auth_client, user, make_finetuned, tmp_path, trained_adapter_dir
):
    folder = tmp_path / "final"
    shutil.copytree(trained_adapter_dir, folder)
    (folder / "notes.txt").write_text("another run")  # other bytes: another stored object
    model = make_finetuned(user, model_dir=folder)
    keep = make_finetuned(user)
    assert model.artifact_key != keep.artifact_key
    key = default_storage.save(f"exports/{model.pk}/adapter.zip", ContentFile(b"zip bytes"))
    ModelExport.objects.create(owner=user, model=model, format="adapter", status=TaskStatus.SUCCEEDED, file_key=key)
    assert default_storage.exists(model.artifact_key) and default_storage.exists(key)

    r = auth_client.delete(f"{URL}{model.pk}/")
    assert r.status_code == 204, r.content
    assert not FineTunedModel.objects.filter(pk=model.pk).exists()
    assert not ModelExport.objects.filter(model_id=model.pk).exists()
    assert not default_storage.exists(model.artifact_key)
    assert not default_storage.exists(key)
    assert default_storage.exists(keep.artifact_key)


def test_delete_keeps_a_stored_object_another_model_uses(auth_client, user, make_finetuned):
    first, second = make_finetuned(user), make_finetuned(user)
    assert first.artifact_key == second.artifact_key  # same bytes, one object
    assert auth_client.delete(f"{URL}{first.pk}/").status_code == 204
    assert default_storage.exists(second.artifact_key)


def test_delete_waits_for_a_running_export(auth_client, user, make_finetuned):
    model = make_finetuned(user)
    ModelExport.objects.create(owner=user, model=model, format="gguf", status=TaskStatus.RUNNING)
    r = auth_client.delete(f"{URL}{model.pk}/")
    assert r.status_code == 409 and "export" in r.json()["detail"]
    assert FineTunedModel.objects.filter(pk=model.pk).exists()


def test_deleting_the_latest_makes_the_previous_version_latest(auth_client, user, make_finetuned):
    v1, v2 = make_finetuned(user), make_finetuned(user)
    assert auth_client.delete(f"{URL}{v2.pk}/").status_code == 204
    assert auth_client.get(f"{URL}{v1.pk}/").json()["latest"] is True


def test_another_users_model_versions_and_compare_are_404(auth_client, user, other_user, make_finetuned):
    theirs = make_finetuned(other_user)
    mine = make_finetuned(user)
    for method, path in [
        ("get", f"{theirs.pk}/"),
        ("patch", f"{theirs.pk}/"),
        ("delete", f"{theirs.pk}/"),
        ("get", f"{theirs.pk}/versions/"),
        ("get", f"{theirs.pk}/compare/?other={mine.pk}"),
        ("get", f"{mine.pk}/compare/?other={theirs.pk}"),
        ("post", f"{theirs.pk}/generate/"),
    ]:
        r = (
            getattr(auth_client, method)(
                URL + path, {"tag": "x", "messages": [{"role": "user", "content": "hi"}]}, format="json"
            )
            if method in ("patch", "post")
            else getattr(auth_client, method)(URL + path)
        )
        assert r.status_code == 404, (method, path, r.status_code, r.content)
    assert theirs.pk not in [m["id"] for m in _results(auth_client.get(URL))]
    theirs.refresh_from_db()
    assert theirs.tag == "" and default_storage.exists(theirs.artifact_key)


def test_anonymous_is_refused(api_client, user, make_finetuned):
    model = make_finetuned(user)
    assert api_client.get(URL).status_code == 401
    assert api_client.get(f"{URL}{model.pk}/versions/").status_code == 401
