"""The Hugging Face token: validated against a local fake Hub, encrypted at rest, never shown again."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from accounts import crypto, services
from accounts.models import User

pytestmark = pytest.mark.django_db
VALID = "hf_validTokenForAlice1234"


def _raw_column(user_id: int) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT hf_token_encrypted FROM accounts_user WHERE id = %s", [user_id])
        return cur.fetchone()[0]


def test_valid_token_is_checked_with_whoami_and_stored_encrypted(auth_client, user, fake_hub, caplog):
    caplog.set_level(logging.DEBUG)
    r = auth_client.post("/api/auth/hf-token/", {"token": VALID}, format="json")
    assert r.status_code == 200, r.content
    assert r.json() == {"valid": True, "hf_username": "alice-hf", "last4": "1234"}
    assert fake_hub.requests[-1]["path"] == "/api/whoami-v2"
    assert fake_hub.requests[-1]["authorization"] == f"Bearer {VALID}"
    raw = _raw_column(user.id)
    assert raw and VALID not in raw and "1234" not in raw
    assert crypto.decrypt(raw) == VALID
    assert services.get_hf_token(User.objects.get(pk=user.pk)) == VALID
    assert VALID not in caplog.text


def test_token_never_appears_in_any_api_response(auth_client, fake_hub):
    responses = [auth_client.post("/api/auth/hf-token/", {"token": VALID}, format="json")]
    responses += [auth_client.get(p) for p in ("/api/auth/hf-token/", "/api/auth/me/", "/api/auth/tokens/")]
    for r in responses:
        assert VALID not in r.content.decode()
    assert responses[1].json() == {"present": True, "last4": "1234", "hf_username": "alice-hf"}
    me = responses[2].json()
    assert me["has_hf_token"] is True and me["hf_token_last4"] == "1234"


def test_invalid_token_is_refused_and_nothing_is_stored(auth_client, user, fake_hub):
    r = auth_client.post("/api/auth/hf-token/", {"token": "hf_revokedOrWrong9999"}, format="json")
    assert r.status_code == 400
    body = r.json()
    assert "rejected this token" in body["detail"] and "token" in body["errors"]
    assert _raw_column(user.id) == ""
    assert "hf_revokedOrWrong9999" not in r.content.decode()


def test_hub_outage_is_reported_and_nothing_is_stored(auth_client, user, fake_hub):
    fake_hub.fail_with = 500
    r = auth_client.post("/api/auth/hf-token/", {"token": VALID}, format="json")
    assert r.status_code == 502 and "try again" in r.json()["detail"]
    assert _raw_column(user.id) == ""


def test_unreachable_hub_is_reported(auth_client, user, settings):
    settings.HF_ENDPOINT = "http://127.0.0.1:9"  # discard port: connection refused
    r = auth_client.post("/api/auth/hf-token/", {"token": VALID}, format="json")
    assert r.status_code == 502 and "Could not reach" in r.json()["detail"]


def test_token_can_be_deleted(auth_client, user, fake_hub):
    auth_client.post("/api/auth/hf-token/", {"token": VALID}, format="json")
    assert auth_client.delete("/api/auth/hf-token/").status_code == 204
    assert auth_client.get("/api/auth/hf-token/").json() == {"present": False, "last4": "", "hf_username": ""}
    assert _raw_column(user.id) == ""


def test_empty_token_gets_a_clear_message(auth_client, fake_hub):
    r = auth_client.post("/api/auth/hf-token/", {"token": ""}, format="json")
    assert r.status_code == 400 and "token" in r.json()["errors"]


def test_key_rotation_reencrypts_every_secret_under_the_newest_key(settings, fake_hub, capsys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRET_ENCRYPTION_KEYS = [old]
    users = [
        User.objects.create_user(username=f"rot{i}", email=f"rot{i}@example.com", password="x-Strong-pass-1")
        for i in range(3)
    ]
    services.save_hf_token(users[0], token=VALID)
    services.save_hf_token(users[1], token="hf_validTokenForBob5678")
    User.objects.filter(pk=users[2].pk).update(webhook_secret_encrypted=crypto.encrypt("whsec-carol"))
    settings.SECRET_ENCRYPTION_KEYS = [new, old]  # newest first
    call_command("rotate_secrets")
    assert "Re-encrypted 3 secret(s)" in capsys.readouterr().out  # the webhook secret too
    settings.SECRET_ENCRYPTION_KEYS = [new]  # the old key is retired
    assert crypto.decrypt(User.objects.get(pk=users[2].pk).webhook_secret_encrypted) == "whsec-carol"
    assert services.get_hf_token(User.objects.get(pk=users[0].pk)) == VALID
    assert services.get_hf_token(User.objects.get(pk=users[1].pk)) == "hf_validTokenForBob5678"
    assert services.get_hf_token(User.objects.get(pk=users[2].pk)) is None
    only_old = Fernet(old.encode())
    from cryptography.fernet import InvalidToken

    with pytest.raises(InvalidToken):
        only_old.decrypt(_raw_column(users[0].pk).encode())


def test_admin_pages_never_show_the_token(client, fake_hub):
    admin = User.objects.create_superuser(username="op", email="op@example.com", password="x-Strong-pass-1")
    alice = User.objects.create_user(username="alice", email="alice@example.com", password="x-Strong-pass-1")
    services.save_hf_token(alice, token=VALID)
    client.force_login(admin)
    pages = [
        client.get("/admin/accounts/user/"),
        client.get(f"/admin/accounts/user/{alice.pk}/change/"),
        client.get("/admin/accounts/user/?q=alice"),
        client.get("/admin/accounts/user/?hf_token=yes"),
        client.get("/admin/accounts/apitoken/"),
    ]
    raw = _raw_column(alice.pk)
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert VALID not in html and raw not in html
    assert "•••• 1234" in pages[1].content.decode()
    assert "alice" in pages[3].content.decode()
