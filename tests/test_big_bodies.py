"""Bad input: a 10 MB JSON body on every write route under /api/ (POST, PUT, PATCH, taken from the URL resolver)
never causes a server error or creates anything; a refusal is the API's JSON error (413 for a body past the limit)."""

from __future__ import annotations

import json
import re

import pytest
from django.apps import apps

from tests.factories import DatasetFactory, FineTunedModelFactory, TrainingJobFactory
from tests.routes import http_routes

pytestmark = pytest.mark.django_db
BODY = json.dumps({"name": "x" * (10 * 1024 * 1024), "messages": [{"role": "user", "content": "y" * 1024}]})
WRITES = ("post", "put", "patch")


def writable_methods(callback) -> list[str]:  # type: ignore[no-untyped-def]
    actions = getattr(callback, "actions", None)
    if actions:
        return [m for m in WRITES if m in actions]
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    return [m for m in WRITES if cls is not None and hasattr(cls, m)]


def row_counts() -> dict[str, int]:
    return {
        m._meta.label: m.objects.count()
        for m in apps.get_models()
        if m._meta.app_label in ("accounts", "datasets_app", "models_app", "training")
        and m._meta.model_name != "loginlock"
    }


def test_ten_megabyte_json_bodies_are_refused_plainly_everywhere(auth_client, user):
    job = TrainingJobFactory(owner=user, dataset=DatasetFactory(owner=user, rows=False))
    model = FineTunedModelFactory(owner=user)
    ids = {"pk": model.pk, "export_id": 1, "import_id": 1, "job_id": job.pk, "file_id": 1, "name": "final"}
    before = row_counts()
    calls, statuses = 0, {}
    for route, callback in http_routes().items():
        if not route.startswith("api/") or callback is None or route.startswith("api/internal/"):
            continue
        path = "/" + re.sub(r"<(\w+)>", lambda m: str(ids.get(m.group(1), 1)), route)
        if route.startswith(("api/datasets/<pk>", "api/training/jobs/<pk>")):
            path = path.replace(f"/{model.pk}/", f"/{job.dataset_id if 'datasets' in route else job.pk}/", 1)
        for method in writable_methods(callback):
            r = getattr(auth_client, method)(path, data=BODY, content_type="application/json")
            calls += 1
            statuses[f"{method.upper()} {path}"] = r.status_code
            where = f"{method.upper()} {path}: {r.status_code} {r.content[:300]!r}"
            assert r.status_code < 500, where  # a route that never reads a body (sign-out) may still answer 2xx
            if r.status_code >= 400:
                assert r["Content-Type"].startswith("application/json") and "detail" in r.json(), where
    assert calls >= 25, statuses  # every write route was tried (27 today)
    assert row_counts() == before  # nothing created or changed in size
    print(
        f"\n10 MB JSON bodies: {calls} calls, statuses {sorted(set(statuses.values()))}; 2xx: "
        f"{[k for k, v in statuses.items() if v < 300]}"
    )
