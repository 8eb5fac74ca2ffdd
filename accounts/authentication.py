"""DRF authentication: the session cookie (CSRF enforced) and `Authorization: Token <key>` for scripts."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models.base import ModelState
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiToken, User, hash_token_key

logger = logging.getLogger(__name__)

# Resolved tokens, per process: key hash -> (resolved at, auth epoch, token with its user). Scripts call the API in
# tight loops; resolving a token costs a join query per request. An entry is used only while the shared "auth epoch"
# in the cache is unchanged: deleting a token or saving a user (deactivation, password change) bumps it. The process
# that made the change drops its entries at once; the others see the new epoch within EPOCH_CHECK_S (1 s).
# API_TOKEN_CACHE_S bounds an entry's age anyway (changes made with queryset.update() send no signal).
_EPOCH_KEY = "auth:epoch"
_resolved: dict[str, tuple[float, int, ApiToken]] = {}
_lock = threading.Lock()
_MAX_ENTRIES = 10_000


_epoch_seen: tuple[float, int | None] = (-1e9, None)
EPOCH_CHECK_S = 1.0  # how often a process re-reads the shared epoch (bounds how late a revocation is seen)


def auth_epoch() -> int | None:
    """The shared auth epoch, re-read at most every EPOCH_CHECK_S (None when the cache cannot be read: then nothing
    cached is trusted)."""
    global _epoch_seen
    now = time.monotonic()
    if now - _epoch_seen[0] < EPOCH_CHECK_S:
        return _epoch_seen[1]
    try:
        epoch: int | None = int(cache.get(_EPOCH_KEY) or 0)
    except Exception as exc:
        logger.warning("auth epoch unreadable, resolving API tokens from the database: %s", exc)
        epoch = None
    _epoch_seen = (now, epoch)
    return epoch


def bump_auth_epoch() -> None:
    """Invalidate every process's resolved tokens (a token was revoked or a user changed)."""
    global _epoch_seen
    with _lock:
        _resolved.clear()
        _epoch_seen = (-1e9, None)
    try:
        if not cache.add(_EPOCH_KEY, 1, timeout=None):
            cache.incr(_EPOCH_KEY)
    except Exception as exc:  # processes stop trusting their entries when they cannot read the epoch either
        logger.warning("could not bump the auth epoch: %s", exc)


@receiver(post_delete, sender=ApiToken)
@receiver(post_save, sender=ApiToken)
@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def _auth_changed(sender: Any, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if sender is User and update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a sign-in changes nothing a token grants
    bump_auth_epoch()


def _resolve(key_hash: str) -> ApiToken | None:
    ttl = float(settings.API_TOKEN_CACHE_S)
    epoch = auth_epoch() if ttl > 0 else None
    now = time.monotonic()
    hit = _resolved.get(key_hash)
    if epoch is not None and hit is not None and hit[1] == epoch and now - hit[0] < ttl:
        return hit[2]
    try:  # get(): no ORDER BY to build
        token = ApiToken.objects.select_related("user").get(key_hash=key_hash)
    except ApiToken.DoesNotExist:
        return None
    if epoch is not None:
        with _lock:
            if len(_resolved) >= _MAX_ENTRIES:
                _resolved.clear()
            _resolved[key_hash] = (now, epoch, token)
    return token


class CsrfSessionAuthentication(authentication.SessionAuthentication):
    """Session authentication; DRF enforces CSRF on unsafe methods for session-authenticated requests."""


def _copy(instance: Any) -> Any:
    """A shallow copy of a cached model instance for one request, without its related-object cache: what
    copy.copy gives, at a tenth of the cost (copy.copy goes through Model.__reduce__ and deep-copies the state)."""
    clone = instance.__class__.__new__(instance.__class__)
    clone.__dict__ = instance.__dict__.copy()
    clone._state = ModelState()
    clone._state.db, clone._state.adding = instance._state.db, False
    return clone


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <key>`; the key is looked up by its SHA-256 hash."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: expected 'Token <key>'.")
        try:
            key = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token header: the key has invalid characters.") from exc
        token = _resolve(hash_token_key(key))
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        now = timezone.now()
        if token.last_used is None or (now - token.last_used).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used=now)
            token.last_used = now
        # Each request gets its own copies: views may change request.user, and requests run in parallel threads.
        user = _copy(token.user)
        request_token = _copy(token)
        request_token.user = user
        return user, request_token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
