"""Sign-in throttling per IP and per username, and the lockout after a run of failures (of one username from one
address: see test_signin_pairs.py)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts.models import LoginLock

pytestmark = pytest.mark.django_db


def _login(client, username, password, ip="10.0.0.1"):
    return client.post("/api/auth/login/", {"username": username, "password": password}, format="json", REMOTE_ADDR=ip)


def test_account_locks_after_repeated_failures_even_for_the_right_password(api_client, user, password, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    for _ in range(2):
        assert _login(api_client, user.username, "wrong-password").status_code == 400
    r = _login(api_client, user.username, "wrong-password")
    assert r.status_code == 429
    assert "Too many failed sign-in attempts" in r.json()["detail"] and int(r["Retry-After"]) > 0
    user.refresh_from_db()
    assert user.is_locked  # from some address: the operators' summary
    r = _login(api_client, user.username, password)
    assert r.status_code == 429 and "Too many failed sign-in attempts" in r.json()["detail"]


def test_lock_expires(api_client, user, password, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 2
    _login(api_client, user.username, "bad-1")
    _login(api_client, user.username, "bad-2")
    LoginLock.objects.filter(username=user.username.lower()).update(
        locked_until=timezone.now() - timezone.timedelta(seconds=1)
    )
    assert _login(api_client, user.username, password).status_code == 200
    user.refresh_from_db()
    assert user.failed_login_count == 0 and user.locked_until is None


def test_success_resets_the_failure_count(api_client, user, password, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    _login(api_client, user.username, "bad-1")
    _login(api_client, user.username, "bad-2")
    assert _login(api_client, user.username, password).status_code == 200
    _login(api_client, user.username, "bad-3")
    _login(api_client, user.username, "bad-4")
    user.refresh_from_db()
    assert not user.is_locked


def _set_rate(monkeypatch, scope, rate):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, scope: rate})


def test_login_is_throttled_per_username_across_ips(api_client, user, settings, monkeypatch):
    settings.LOGIN_LOCKOUT_THRESHOLD = 1000
    _set_rate(monkeypatch, "login_username", "3/min")
    codes = [_login(api_client, user.username, "bad", ip=f"10.0.0.{i}").status_code for i in range(5)]
    assert codes[:3] == [400, 400, 400] and codes[3:] == [429, 429]
    r = _login(api_client, user.username, "bad", ip="10.0.0.99")
    assert "Too many sign-in attempts" in r.json()["detail"]
    # Another username from the same IPs is not affected.
    assert _login(api_client, "someone-else", "bad", ip="10.0.0.1").status_code == 400


def test_login_is_throttled_per_ip(api_client, monkeypatch):
    _set_rate(monkeypatch, "login_ip", "4/min")
    codes = [_login(api_client, f"name{i}", "bad", ip="10.9.9.9").status_code for i in range(6)]
    assert codes[:4] == [400] * 4 and codes[4:] == [429, 429]
    assert _login(api_client, "name0", "bad", ip="10.9.9.10").status_code == 400
