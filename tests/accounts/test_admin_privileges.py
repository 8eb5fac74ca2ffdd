"""Staff who may edit users but are not superusers cannot grant privileges: not superuser, not staff, not groups or
permissions, not to another user and not to themselves (the admin shows those fields read-only to them)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission

from accounts.models import User

pytestmark = pytest.mark.django_db
PASSWORD = "x-Strong-pass-1"


def change_form(user: User, **changes) -> dict:
    data = {
        "username": user.username,
        "email": user.email,
        "display_name": user.display_name,
        "first_name": "",
        "last_name": "",
        "quota_overrides": "{}",
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "apitoken_set-TOTAL_FORMS": "0",
        "apitoken_set-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return data


def test_staff_who_edit_users_cannot_grant_privileges(client):
    group = Group.objects.create(name="operators")
    perm = Permission.objects.get(codename="delete_user")
    helpdesk = User.objects.create_user(username="helpdesk", email="hd@example.com", password=PASSWORD, is_staff=True)
    helpdesk.user_permissions.add(*Permission.objects.filter(codename__in=["view_user", "change_user"]))
    alice = User.objects.create_user(username="alice", email="alice@example.com", password=PASSWORD)
    client.force_login(helpdesk)

    page = client.get(f"/admin/accounts/user/{alice.pk}/change/")
    assert page.status_code == 200
    assert 'name="is_superuser"' not in page.content.decode()  # shown, not editable

    for target in (alice, helpdesk):
        r = client.post(
            f"/admin/accounts/user/{target.pk}/change/",
            change_form(
                target,
                display_name="edited",
                is_superuser="on",
                is_staff="on",
                groups=[group.pk],
                user_permissions=[perm.pk],
            ),
        )
        assert r.status_code == 302, r.content.decode()[:2000]
        target.refresh_from_db()
        assert target.display_name == "edited"  # the edit itself went through
        assert not target.is_superuser and not target.groups.exists()
        assert not target.user_permissions.filter(pk=perm.pk).exists()
    alice.refresh_from_db()
    assert not alice.is_staff
