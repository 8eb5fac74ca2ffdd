"""The React shell on every client route, the OpenAPI schema and Swagger UI, and `check --deploy`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def built_frontend(tmp_path, settings):
    build = tmp_path / "frontend"
    (build / ".vite").mkdir(parents=True)
    (build / ".vite" / "manifest.json").write_text(
        json.dumps(
            {"src/main.tsx": {"file": "assets/main-abc123.js", "css": ["assets/main-def456.css"], "isEntry": True}}
        )
    )
    settings.FRONTEND_BUILD_DIR = build
    return build


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/settings", "/datasets/42", "/training/jobs/7?tab=logs"])
def test_client_routes_serve_the_shell(client, built_frontend, path):
    r = client.get(path)
    assert r.status_code == 200
    html = r.content.decode()
    assert '<div id="root"></div>' in html
    assert "/static/frontend/assets/main-abc123.js" in html and "main-def456.css" in html
    assert "csrftoken" in r.cookies


@pytest.mark.django_db
def test_missing_build_is_explained(client, settings, tmp_path):
    settings.FRONTEND_BUILD_DIR = tmp_path / "nothing"
    r = client.get("/")
    assert r.status_code == 503 and b"make frontend-build" in r.content


@pytest.mark.django_db
def test_openapi_schema_and_swagger_ui(client):
    r = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert r.status_code == 200
    schema = json.loads(r.content)
    for p in ("/api/auth/login/", "/api/auth/hf-token/", "/api/auth/tokens/", "/api/health/"):
        assert p in schema["paths"], p
    assert client.get("/api/docs/").status_code == 200
    assert client.options("/api/docs/").status_code == 405  # was a 500: the page renderer cannot answer OPTIONS
