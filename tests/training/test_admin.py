"""Operators' admin for jobs: pages render with filters, the cancel action calls the service."""

from __future__ import annotations

import pytest

from accounts.models import User
from tests.factories import TINY_HYPER, make_ready_dataset
from training.models import TrainingJob

pytestmark = pytest.mark.django_db


def test_job_admin_lists_filters_and_cancels(client, user, embedded_base, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "m"
    ds = make_ready_dataset(user)
    job = TrainingJob.objects.create(
        owner=user,
        name="opsjob",
        base_model=embedded_base,
        dataset=ds,
        method="sft",
        weights="lora",
        hyperparameters=TINY_HYPER,
    )
    admin = User.objects.create_superuser(username="ops", email="ops@example.com", password="x-Strong-pass-1")
    client.force_login(admin)
    for url in [
        "/admin/training/trainingjob/",
        "/admin/training/trainingjob/?status__exact=queued&backend__exact=local",
        f"/admin/training/trainingjob/{job.pk}/change/",
        "/admin/datasets_app/dataset/",
        "/admin/models_app/basemodel/",
    ]:
        assert client.get(url).status_code == 200, url
    r = client.post("/admin/training/trainingjob/", {"action": "cancel_jobs", "_selected_action": [job.pk]})
    assert r.status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_staff_without_permissions_sees_no_jobs(client, user):
    staff = User.objects.create_user(
        username="viewer", email="v@example.com", password="x-Strong-pass-1", is_staff=True
    )
    client.force_login(staff)
    assert client.get("/admin/training/trainingjob/").status_code == 403
