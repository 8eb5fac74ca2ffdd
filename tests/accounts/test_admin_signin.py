"""The admin's sign-in form goes through the API's throttles and the (username, address) lockout (issue 13, item 2)."""

from __future__ import annotations

import pytest
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import AuditLog, User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

A, B = "10.3.0.1", "10.4.0.2"


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True, is_superuser=True)


def _admin_login(client, username, password, ip):
    return client.post(
        "/admin/login/", {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip
    )


def _signed_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def _set_rate(monkeypatch, scope, rate):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, scope: rate})


def test_admin_sign_in_is_throttled_per_address(client, staff, password, monkeypatch):
    _set_rate(monkeypatch, "login_ip", "3/min")
    for i in range(3):
        r = _admin_login(client, f"name{i}", "bad", A)
        assert r.status_code == 200 and "Too many" not in r.content.decode()
    r = _admin_login(client, staff.username, password, A)
    assert not _signed_in(r) and "Too many sign-in attempts" in r.content.decode()
    assert _signed_in(_admin_login(client, staff.username, password, B))


def test_admin_sign_in_is_throttled_per_username(client, staff, password, monkeypatch, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 1000
    _set_rate(monkeypatch, "login_username", "2/min")
    _admin_login(client, staff.username, "bad", A)
    _admin_login(client, staff.username, "bad", B)
    r = _admin_login(client, staff.username, "bad", "10.5.0.3")
    assert "Too many sign-in attempts" in r.content.decode()


def test_admin_sign_in_locks_the_pair_only(client, staff, password, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    for _ in range(3):
        assert not _signed_in(_admin_login(client, staff.username, "wrong-password", A))
    r = _admin_login(client, staff.username, password, A)
    assert not _signed_in(r) and "Too many failed sign-in attempts" in r.content.decode()
    assert _signed_in(_admin_login(client, staff.username, password, B))


def test_admin_and_api_count_failures_together(client, api_client, staff, password, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3
    for _ in range(2):
        api_client.post(
            "/api/auth/login/", {"username": staff.username, "password": "bad"}, format="json", REMOTE_ADDR=A
        )
    r = _admin_login(client, staff.username, "bad", A)
    assert "Too many failed sign-in attempts" in r.content.decode()
    assert not _signed_in(_admin_login(client, staff.username, password, A))


def test_admin_answers_do_not_tell_whether_the_account_exists(client, staff, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 3

    def errors(username, ip):
        page = _admin_login(client, username, "wrong-password", ip).content.decode()
        start = page.index('class="errornote"')
        return page[start : page.index("</p>", start)]

    known = [errors(staff.username, A) for _ in range(3)]
    unknown = [errors("nobody-here", A) for _ in range(3)]
    assert known == unknown
    assert "Too many failed sign-in attempts" in known[-1]
    assert errors(staff.username, B) == errors("nobody-here", B)


def test_unlock_action_clears_every_pair_of_the_account(client, staff, user, password, settings):
    settings.LOGIN_LOCKOUT_THRESHOLD = 2
    for ip in (A, B):
        for _ in range(2):
            _admin_login(client, user.username, "bad", ip)
    user.refresh_from_db()
    assert user.is_locked
    client.force_login(staff)
    r = client.post("/admin/accounts/user/", {"action": "unlock_accounts", "_selected_action": [user.pk]})
    assert r.status_code == 302
    user.refresh_from_db()
    assert not user.is_locked and user.failed_login_count == 0
    assert AuditLog.objects.filter(action="user.unlock", target_id=str(user.pk)).exists()
    client.logout()
    for ip in (A, B):
        r = client.post(
            "/api/auth/login/",
            {"username": user.username, "password": password},
            content_type="application/json",
            REMOTE_ADDR=ip,
        )
        assert r.status_code == 200, r.content
    assert User.objects.get(pk=user.pk).locked_until is None
