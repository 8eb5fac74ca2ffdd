"""Secrets at rest: MultiFernet over the keys in settings.SECRET_ENCRYPTION_KEYS (newest first)."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretDecryptionError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


def _derived_dev_key() -> bytes:
    # Development only (DEBUG without FINETUNE_ENCRYPTION_KEYS): a stable key derived from SECRET_KEY.
    digest = hashlib.sha256(("finetune-secrets:" + settings.SECRET_KEY).encode()).digest()
    return base64.urlsafe_b64encode(digest)


@lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    fernets = []
    for i, key in enumerate(keys):
        try:
            fernets.append(Fernet(key.encode() if isinstance(key, str) else key))
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"FINETUNE_ENCRYPTION_KEYS entry {i + 1} is not a valid Fernet key (32 url-safe base64 bytes)"
            ) from exc
    return MultiFernet(fernets)


def get_fernet() -> MultiFernet:
    """The MultiFernet for the configured keys; the first key encrypts, all keys decrypt."""
    keys = tuple(settings.SECRET_ENCRYPTION_KEYS) or (_derived_dev_key().decode(),)
    return _multifernet(keys)


def encrypt(plaintext: str) -> str:
    """Encrypt a secret with the newest key."""
    return get_fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    """Decrypt a secret with any configured key."""
    try:
        return get_fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptionError("stored secret cannot be decrypted with the configured keys") from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypt a secret under the newest key."""
    try:
        return get_fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptionError("stored secret cannot be decrypted with the configured keys") from exc
