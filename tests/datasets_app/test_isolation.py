"""A second user gets 404 on every dataset route of the first."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from datasets_app import processing, services
from datasets_app.models import Dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def foreign_dataset(other_user, media_root, shared_datasets):
    from django.core.files.uploadedfile import TemporaryUploadedFile

    path = shared_datasets / "alpaca_en_demo.json"
    up = TemporaryUploadedFile("alpaca_en_demo.json", "application/json", path.stat().st_size, None)
    up.write(path.read_bytes())
    up.seek(0)
    ds = services.create_dataset(owner=other_user, uploads=[up])
    processing.process_dataset(ds.pk, str(ds.run_token))
    return Dataset.objects.get(pk=ds.pk)


ROUTES = [
    ("get", "/api/datasets/{id}/"),
    ("patch", "/api/datasets/{id}/"),
    ("delete", "/api/datasets/{id}/"),
    ("get", "/api/datasets/{id}/report/"),
    ("post", "/api/datasets/{id}/validate/"),
    ("get", "/api/datasets/{id}/preview/"),
    ("get", "/api/datasets/{id}/statistics/"),
    ("post", "/api/datasets/{id}/preprocess/"),
    ("post", "/api/datasets/{id}/split/"),
    ("get", "/api/datasets/{id}/versions/"),
    ("get", "/api/datasets/{id}/download/"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_other_users_dataset_is_404(auth_client, foreign_dataset, method, route):
    body = {"steps": [{"op": "dedupe"}]} if "preprocess" in route else {"name": "mine now"}
    r = getattr(auth_client, method)(route.format(id=foreign_dataset.pk), body, format="json")
    assert r.status_code == 404, (route, r.status_code)
    assert r.json() == {"detail": "Not found.", "errors": {}}
    foreign_dataset.refresh_from_db()
    assert foreign_dataset.name != "mine now" and Dataset.objects.filter(pk=foreign_dataset.pk).exists()


def test_list_shows_only_own_datasets(auth_client, foreign_dataset):
    assert auth_client.get("/api/datasets/").json()["count"] == 0


def test_anonymous_is_401(foreign_dataset):
    assert APIClient().get(f"/api/datasets/{foreign_dataset.pk}/").status_code == 401
