"""Sign-in lockout keyed on the (username, client address) pair, with answers that never tell whether an account
exists (issue 13, item 2)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

A, B = "10.1.0.1", "10.2.0.2"


def _login(client, username, password, ip):
    return client.post("/api/auth/login/", {"username": username, "password": password}, format="json", REMOTE_ADDR=ip)


def test_a_lock_from_one_address_does_not_lock_the_owner_out_elsewhere(api_client, user, password, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    codes = [_login(api_client, user.username, "wrong-password", A).status_code for _ in range(3)]
    assert codes == [400, 400, 429]
    # The attacker's address stays locked, even with the right password...
    r = _login(api_client, user.username, password, A)
    assert r.status_code == 429 and "Too many" in r.json()["detail"] and int(r["Retry-After"]) > 0
    # ...while the owner, elsewhere, signs in.
    assert _login(api_client, user.username, password, B).status_code == 200
    # The operators still see that the account was attacked (locked from some address).
    user.refresh_from_db()
    assert user.locked_until is not None and user.last_failed_login is not None


def test_answers_are_the_same_for_an_existing_and_an_unknown_username(api_client, user, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    known = [_login(api_client, user.username, "wrong-password", A) for _ in range(3)]
    unknown = [_login(api_client, "nobody-here", "wrong-password", A) for _ in range(3)]
    assert [r.status_code for r in known] == [r.status_code for r in unknown] == [400, 400, 429]
    assert [r.json() for r in known] == [r.json() for r in unknown]
    assert known[-1]["Retry-After"] == unknown[-1]["Retry-After"]
    # From another address, neither the locked account nor the unknown name says anything more than "incorrect".
    other_known = _login(api_client, user.username, "wrong-password", B)
    other_unknown = _login(api_client, "nobody-here", "wrong-password", B)
    assert other_known.status_code == other_unknown.status_code == 400
    assert other_known.json() == other_unknown.json()
    assert "account" not in known[-1].json()["detail"].lower()


def test_username_case_and_spaces_share_one_pair(api_client, user, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    _login(api_client, user.username.upper(), "bad", A)
    _login(api_client, f" {user.username} ", "bad", A)
    assert _login(api_client, user.username, "bad", A).status_code == 429


def test_spoofed_forwarded_for_does_not_escape_the_lock(api_client, user, password, settings):
    """Behind no proxy the client's X-Forwarded-For is ignored: rotating it gives no fresh pair."""
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    codes = [
        api_client.post(
            "/api/auth/login/",
            {"username": user.username, "password": "bad"},
            format="json",
            REMOTE_ADDR=A,
            HTTP_X_FORWARDED_FOR=f"203.0.113.{i}",
        ).status_code
        for i in range(4)
    ]
    assert codes == [400, 400, 429, 429]
