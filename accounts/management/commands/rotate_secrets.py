"""Re-encrypt every stored secret under the newest key of FINETUNE_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts import services


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (users' Hugging Face tokens) under the newest encryption key."

    def handle(self, *args: Any, **options: Any) -> None:
        count = services.rotate_secrets()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} secret(s) under the newest key."))
