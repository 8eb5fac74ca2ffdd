"""Create the first administrator from FINETUNE_ADMIN_* settings when there is none, and say how to sign in."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from finetune.exceptions import ServiceError


class Command(BaseCommand):
    help = "Create the first superuser from FINETUNE_ADMIN_USERNAME/EMAIL/PASSWORD if no superuser exists."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user, generated = services.ensure_admin(
                username=settings.ADMIN_USERNAME, email=settings.ADMIN_EMAIL, password=settings.ADMIN_PASSWORD
            )
        except ServiceError as exc:
            raise CommandError(
                f"FINETUNE_ADMIN_PASSWORD is refused. {exc.message} Set a stronger one, or leave it unset to have "
                "one generated."
            ) from None
        url = f"{settings.SITE_URL.rstrip('/')}/admin/"
        if user is None:
            self.stdout.write(f"An administrator already exists. Operators sign in at {url}")
            return
        self.stdout.write(self.style.SUCCESS(f"Created administrator '{user.username}'. Sign in at {url}"))
        if generated:
            self.stdout.write(
                f"  username: {user.username}\n  password: {generated}\n"
                "  (generated because FINETUNE_ADMIN_PASSWORD is not set; change it after signing in)"
            )
        else:
            self.stdout.write(f"  username: {user.username}\n  password: the value of FINETUNE_ADMIN_PASSWORD")
