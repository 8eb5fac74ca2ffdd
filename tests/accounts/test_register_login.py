"""Sign-up, sign-in, sign-out and the current user over the API (session auth)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_register_creates_user_and_signs_in(api_client):
    r = api_client.post(
        "/api/auth/register/",
        {"username": "carol", "email": "Carol@Example.com", "password": "a-Strong-pass-42"},
        format="json",
    )
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["username"] == "carol" and body["email"] == "carol@example.com"
    assert body["has_hf_token"] is False and "password" not in body
    assert User.objects.get(username="carol").check_password("a-Strong-pass-42")
    me = api_client.get("/api/auth/me/")
    assert me.status_code == 200 and me.json()["username"] == "carol"


def test_register_rejects_weak_password_with_field_error(api_client):
    r = api_client.post(
        "/api/auth/register/", {"username": "dave", "email": "d@example.com", "password": "12345678"}, format="json"
    )
    assert r.status_code == 400
    body = r.json()
    assert "password" in body["errors"] and body["detail"]
    assert not User.objects.filter(username="dave").exists()


def test_register_rejects_duplicate_username_and_email(api_client, user):
    r = api_client.post(
        "/api/auth/register/",
        {"username": user.username.upper(), "email": "x@example.com", "password": "a-Strong-pass-42"},
        format="json",
    )
    assert r.status_code == 400 and "username" in r.json()["errors"]
    r = api_client.post(
        "/api/auth/register/",
        {"username": "newname", "email": user.email, "password": "a-Strong-pass-42"},
        format="json",
    )
    assert r.status_code == 400 and "email" in r.json()["errors"]


def test_register_reports_missing_fields(api_client):
    r = api_client.post("/api/auth/register/", {}, format="json")
    assert r.status_code == 400
    assert set(r.json()["errors"]) == {"username", "email", "password"}


def test_login_logout_round_trip(api_client, user, password):
    assert api_client.get("/api/auth/me/").status_code == 401
    r = api_client.post("/api/auth/login/", {"username": user.username, "password": password}, format="json")
    assert r.status_code == 200 and r.json()["id"] == user.id
    assert api_client.get("/api/auth/me/").status_code == 200
    assert api_client.post("/api/auth/logout/").status_code == 204
    assert api_client.get("/api/auth/me/").status_code == 401


def test_login_with_wrong_password_says_so_plainly(api_client, user):
    r = api_client.post("/api/auth/login/", {"username": user.username, "password": "nope-nope"}, format="json")
    assert r.status_code == 400
    assert r.json() == {"detail": "The username or password is incorrect.", "errors": {}}


def test_unauthenticated_error_uses_common_format(api_client):
    r = api_client.get("/api/auth/me/")
    assert r.status_code == 401 and r["WWW-Authenticate"] == "Token"
    assert set(r.json()) == {"detail", "errors"}


def test_unknown_api_path_is_json_404(api_client):
    r = api_client.get("/api/does-not-exist/")
    assert r.status_code == 404 and r.json()["detail"] == "Not found."


def test_csrf_is_enforced_for_session_auth():
    client = APIClient(enforce_csrf_checks=True)
    # Sign-in itself needs the CSRF token.
    r = client.post("/api/auth/login/", {"username": "x", "password": "y"}, format="json")
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    token = client.get("/api/auth/csrf/").json()["csrfToken"]
    User.objects.create_user(username="erin", email="erin@example.com", password="a-Strong-pass-42")
    r = client.post(
        "/api/auth/login/", {"username": "erin", "password": "a-Strong-pass-42"}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert r.status_code == 200, r.content
    # An unsafe request on the session without the header is refused; with the (rotated) token it passes.
    r = client.patch("/api/auth/me/", {"display_name": "E"}, format="json")
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    token = client.cookies["csrftoken"].value
    r = client.patch("/api/auth/me/", {"display_name": "E"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 200 and r.json()["display_name"] == "E"
