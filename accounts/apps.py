from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Users, API tokens, secrets at rest and quotas."""

    name = "accounts"

    def ready(self) -> None:
        from . import authentication, schema  # noqa: F401  (token-cache invalidation signals; OpenAPI auth extensions)
