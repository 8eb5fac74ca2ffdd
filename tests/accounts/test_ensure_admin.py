"""`ensure_admin` runs the password validators on a given password (issue 13, item 2)."""

from __future__ import annotations

import pytest
from django.contrib.auth import password_validation
from django.core.management import CommandError, call_command

from accounts import services
from accounts.models import User
from finetune.exceptions import ServiceError

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("weak", ["password", "12345678", "short1", "admin-admin"])
def test_a_weak_password_is_refused(weak):
    with pytest.raises(ServiceError) as exc:
        services.ensure_admin(username="admin-admin", email="admin@example.com", password=weak)
    assert "password" in exc.value.message.lower()
    assert not User.objects.filter(is_superuser=True).exists()


def test_the_command_refuses_a_weak_password_with_a_plain_message(settings):
    settings.ADMIN_USERNAME, settings.ADMIN_EMAIL, settings.ADMIN_PASSWORD = "root", "root@example.com", "password"
    with pytest.raises(CommandError) as exc:
        call_command("ensure_admin")
    text = str(exc.value)
    assert "FINETUNE_ADMIN_PASSWORD" in text and "too common" in text
    assert "Traceback" not in text
    assert not User.objects.filter(is_superuser=True).exists()


def test_a_strong_or_generated_password_is_accepted():
    user, generated = services.ensure_admin(username="root", email="root@example.com", password=None)
    assert user is not None and user.is_superuser and generated
    password_validation.validate_password(generated, user)
    User.objects.all().delete()
    user, generated = services.ensure_admin(username="root", email="root@example.com", password="Quiet-River-42x")
    assert user is not None and generated is None and user.check_password("Quiet-River-42x")
