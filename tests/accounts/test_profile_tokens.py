"""Profile edit, password change, API tokens (shown once, hashed at rest, revocable) and token auth."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken, hash_token_key

pytestmark = pytest.mark.django_db


def test_profile_edit(auth_client, user):
    r = auth_client.patch("/api/auth/me/", {"display_name": "Ada L.", "email": "ADA@example.org"}, format="json")
    assert r.status_code == 200
    assert r.json()["display_name"] == "Ada L." and r.json()["email"] == "ada@example.org"
    user.refresh_from_db()
    assert user.display_name == "Ada L."


def test_profile_rejects_taken_email(auth_client, other_user):
    r = auth_client.patch("/api/auth/me/", {"email": other_user.email}, format="json")
    assert r.status_code == 400 and "email" in r.json()["errors"]


def test_me_reports_quotas_and_usage(auth_client, settings):
    body = auth_client.get("/api/auth/me/").json()
    assert body["quotas"]["concurrent_jobs"] == settings.DEFAULT_QUOTAS["concurrent_jobs"]
    assert "storage_bytes" in body["usage"]


def test_password_change_keeps_session_and_checks_old_password(api_client, user, password):
    api_client.post("/api/auth/login/", {"username": user.username, "password": password}, format="json")
    r = api_client.post(
        "/api/auth/change-password/", {"old_password": "wrong", "new_password": "N3w-secure-pass"}, format="json"
    )
    assert r.status_code == 400 and "old_password" in r.json()["errors"]
    r = api_client.post(
        "/api/auth/change-password/", {"old_password": password, "new_password": "short"}, format="json"
    )
    assert r.status_code == 400 and "new_password" in r.json()["errors"]
    r = api_client.post(
        "/api/auth/change-password/", {"old_password": password, "new_password": "N3w-secure-pass"}, format="json"
    )
    assert r.status_code == 200
    assert api_client.get("/api/auth/me/").status_code == 200  # session survives
    user.refresh_from_db()
    assert user.check_password("N3w-secure-pass")


def test_password_change_ends_the_other_sessions(user, password):
    """A stolen session stops working once the owner changes the password; the session that changed it stays."""
    here, elsewhere = APIClient(), APIClient()
    for client in (here, elsewhere):
        r = client.post("/api/auth/login/", {"username": user.username, "password": password}, format="json")
        assert r.status_code == 200
        assert client.get("/api/auth/me/").status_code == 200
    r = here.post(
        "/api/auth/change-password/", {"old_password": password, "new_password": "N3w-secure-pass"}, format="json"
    )
    assert r.status_code == 200
    assert here.get("/api/auth/me/").status_code == 200
    assert elsewhere.get("/api/auth/me/").status_code == 401  # signed out


def test_api_token_is_shown_once_and_stored_hashed(auth_client, user):
    r = auth_client.post("/api/auth/tokens/", {"name": "ci script"}, format="json")
    assert r.status_code == 201
    key = r.json()["key"]
    assert key.startswith("ft_") and len(key) > 30
    token = ApiToken.objects.get(user=user)
    assert token.key_hash == hash_token_key(key) and key not in token.key_hash
    listed = auth_client.get("/api/auth/tokens/").json()
    assert listed["count"] == 1 and "key" not in listed["results"][0]
    assert listed["results"][0]["prefix"] == key[:10]


def test_token_auth_works_for_scripts_and_revocation_stops_it(auth_client, user):
    key = auth_client.post("/api/auth/tokens/", {"name": "script"}, format="json").json()["key"]
    script = APIClient(enforce_csrf_checks=True)
    script.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert script.get("/api/auth/me/").json()["id"] == user.id
    # Token auth needs no CSRF token for unsafe methods.
    assert script.patch("/api/auth/me/", {"display_name": "bot"}, format="json").status_code == 200
    assert ApiToken.objects.get(user=user).last_used is not None
    token_id = ApiToken.objects.get(user=user).pk
    assert auth_client.delete(f"/api/auth/tokens/{token_id}/").status_code == 204
    r = script.get("/api/auth/me/")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_bad_token_header_is_refused(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token ft_not-a-real-key")
    assert api_client.get("/api/auth/me/").status_code == 401


def test_tokens_are_scoped_to_their_owner(auth_client, other_user):
    from accounts.services import create_api_token

    foreign = create_api_token(other_user, name="theirs").token
    assert auth_client.get("/api/auth/tokens/").json()["count"] == 0
    assert auth_client.delete(f"/api/auth/tokens/{foreign.pk}/").status_code == 404
    assert ApiToken.objects.filter(pk=foreign.pk).exists()


def test_token_needs_a_name(auth_client):
    r = auth_client.post("/api/auth/tokens/", {"name": "  "}, format="json")
    assert r.status_code == 400 and "name" in r.json()["errors"]
