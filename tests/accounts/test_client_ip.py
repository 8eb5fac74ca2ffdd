"""The client's address for throttles and the lockout: REMOTE_ADDR, or behind BEHIND_PROXY the address the proxy
appended to X-Forwarded-For; never what the client wrote there itself (issue 13, item 3)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from rest_framework.throttling import SimpleRateThrottle

pytestmark = pytest.mark.django_db

SETTINGS = Path(__file__).resolve().parents[2] / "finetune" / "settings.py"


def _settings_with(monkeypatch, **env):
    monkeypatch.setenv("DEBUG", "1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def test_num_proxies_follows_behind_proxy(monkeypatch):
    monkeypatch.delenv("BEHIND_PROXY", raising=False)
    assert _settings_with(monkeypatch)["REST_FRAMEWORK"]["NUM_PROXIES"] == 0
    assert _settings_with(monkeypatch, BEHIND_PROXY="1")["REST_FRAMEWORK"]["NUM_PROXIES"] == 1


def _set_rate(monkeypatch, scope, rate):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, scope: rate})


def _login(client, ip, forwarded=None, username="someone"):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return client.post(
        "/api/auth/login/", {"username": username, "password": "bad"}, format="json", REMOTE_ADDR=ip, **extra
    )


def test_a_forged_forwarded_for_does_not_reset_the_ip_throttle(api_client, monkeypatch):
    _set_rate(monkeypatch, "login_ip", "3/min")
    codes = [_login(api_client, "10.6.0.1", f"198.51.100.{i}", username=f"n{i}").status_code for i in range(5)]
    assert codes == [400, 400, 400, 429, 429]


def test_a_forged_forwarded_for_does_not_reset_the_register_throttle(api_client, monkeypatch):
    _set_rate(monkeypatch, "register_ip", "2/min")
    codes = [
        api_client.post(
            "/api/auth/register/",
            {"username": f"new{i}", "email": f"new{i}@example.com", "password": "Quiet-River-42x"},
            format="json",
            REMOTE_ADDR="10.6.0.2",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}",
        ).status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 429]


def test_behind_a_proxy_the_address_it_appended_is_the_client(api_client, monkeypatch, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    _set_rate(monkeypatch, "login_ip", "2/min")
    proxy = "10.0.0.254"
    # The client forges the first entries; the proxy appends the address it saw.
    assert _login(api_client, proxy, "1.2.3.4, 192.0.2.10", username="a").status_code == 400
    assert _login(api_client, proxy, "5.6.7.8, 192.0.2.10", username="b").status_code == 400
    assert _login(api_client, proxy, "192.0.2.10", username="c").status_code == 429
    # Another client behind the same proxy has its own budget.
    assert _login(api_client, proxy, "1.2.3.4, 192.0.2.11", username="d").status_code == 400


def test_behind_a_proxy_the_lockout_pair_uses_the_same_address(api_client, user, password, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    settings.LOGIN_LOCKOUT_THRESHOLD = 2
    proxy = "10.0.0.254"

    def login(forwarded, pw):
        return api_client.post(
            "/api/auth/login/",
            {"username": user.username, "password": pw},
            format="json",
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=forwarded,
        )

    assert login("9.9.9.9, 192.0.2.20", "bad").status_code == 400
    assert login("8.8.8.8, 192.0.2.20", "bad").status_code == 429
    assert login("192.0.2.20", password).status_code == 429
    assert login("192.0.2.21", password).status_code == 200
