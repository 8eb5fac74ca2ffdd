"""Sign-in with a lockout per (username, client address) pair, shared by the API and the admin's sign-in form.

A run of failed attempts from one address locks that address out for that username only: whoever tries a victim's
account from elsewhere cannot lock its owner out. Unknown usernames are counted and locked the same way, and every
answer reads the same for both, so nothing tells whether an account exists. The pairs live in LoginLock (why a table:
see its docstring); the User's failed_login_count / last_failed_login / locked_until summarise them for operators.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from rest_framework.settings import api_settings

from finetune.exceptions import ServiceError

from .models import LoginLock, User

logger = logging.getLogger(__name__)

INCORRECT = "The username or password is incorrect."


def client_ip(request: Any) -> str:
    """The client's address, for the sign-in throttles and the lockout pair alike.

    Behind no proxy (DRF's NUM_PROXIES 0: BEHIND_PROXY off) it is REMOTE_ADDR, and X-Forwarded-For, which anybody can
    send, is ignored. Behind NUM_PROXIES trusted proxies it is the entry the client-facing one of them appended to
    X-Forwarded-For; the entries before it are whatever the client wrote."""
    meta = request.META
    remote = str(meta.get("REMOTE_ADDR") or "")
    proxies = int(api_settings.NUM_PROXIES or 0)
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if proxies <= 0 or not forwarded:
        return remote[:64]
    addresses = [a.strip() for a in str(forwarded).split(",")]
    return (addresses[-min(proxies, len(addresses))] or remote)[:64]


def pair_username(username: str) -> str:
    """The username half of a lockout pair: stripped and lower-cased, as sign-in matches usernames."""
    return username.strip().lower()[:150]


class TooManyAttempts(ServiceError):
    """Too many failed sign-ins for this username from this address: that pair is paused for a while."""

    status_code = 429

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, -(-retry_after // 60))
        super().__init__(
            f"Too many failed sign-in attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}, "
            "or ask an administrator."
        )
        self.retry_after = retry_after


def sign_in(*, request: Any, username: str, password: str) -> User:
    """Check the credentials, counting failures per (username, client address) and locking that pair after a run."""
    account = User.objects.filter(username__iexact=username.strip()).first()
    name = pair_username(account.username if account else username)
    ip, now = client_ip(request), timezone.now()
    locked_until = (
        LoginLock.objects.filter(username=name, ip=ip, locked_until__gt=now).values_list("locked_until", flat=True)
    ).first()
    if locked_until is not None:
        raise TooManyAttempts(int((locked_until - now).total_seconds()) + 1)
    user = authenticate(request, username=account.username if account else username, password=password)
    if user is None:
        locked_until = _record_failure(name, ip, now)
        if account is not None:
            _note_failure(account, now, locked_until)
        logger.info("failed sign-in for username %r from %s", name, ip)
        if locked_until is not None:
            logger.warning("sign-in for username %r from %s locked after repeated failures", name, ip)
            raise TooManyAttempts(settings.LOGIN_LOCKOUT_SECONDS)
        raise ServiceError(INCORRECT, status_code=400)
    if not user.is_active:
        raise ServiceError("This account is disabled.", status_code=403)
    _record_success(name, ip, user)
    return user


def _record_failure(name: str, ip: str, now: datetime) -> datetime | None:
    """Count a failure of the pair (row-locked, so parallel attempts all count); lock it at the threshold. Returns
    the end of the lock this failure started, if it did."""
    window_start = now - timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)
    # Rows whose failures and lock are both over: unknown usernames would otherwise pile up.
    LoginLock.objects.filter(last_failure__lt=window_start).filter(
        Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    ).delete()
    with transaction.atomic():
        row, _ = LoginLock.objects.select_for_update().get_or_create(
            username=name, ip=ip, defaults={"last_failure": now}
        )
        recent = row.failures > 0 and row.last_failure >= window_start
        row.failures = (row.failures if recent else 0) + 1
        row.last_failure = now
        locked = row.failures >= settings.LOGIN_LOCKOUT_THRESHOLD
        if locked:
            row.locked_until = now + timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)
            row.failures = 0
        row.save(update_fields=["failures", "last_failure", "locked_until"])
    return row.locked_until if locked else None


def _note_failure(account: User, now: datetime, locked_until: datetime | None) -> None:
    """Update the account's summary for operators (a queryset update: no signal, the auth epoch stays)."""
    window_start = now - timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)
    with transaction.atomic():
        row = (
            User.objects.select_for_update()
            .only("failed_login_count", "last_failed_login", "locked_until")
            .get(pk=account.pk)
        )
        recent = row.last_failed_login is not None and row.last_failed_login >= window_start
        latest_lock = row.locked_until
        if locked_until is not None and (latest_lock is None or latest_lock < locked_until):
            latest_lock = locked_until
        User.objects.filter(pk=account.pk).update(
            failed_login_count=(row.failed_login_count if recent else 0) + 1,
            last_failed_login=now,
            locked_until=latest_lock,
        )


def _record_success(name: str, ip: str, user: User) -> None:
    """Forget the pair's failures; the account's summary keeps only the locks other addresses still have."""
    LoginLock.objects.filter(username=name, ip=ip).delete()
    if user.failed_login_count or user.locked_until:
        still = LoginLock.objects.filter(username=name, locked_until__gt=timezone.now()).aggregate(
            latest=Max("locked_until")
        )["latest"]
        User.objects.filter(pk=user.pk).update(failed_login_count=0, locked_until=still)


def unlock(usernames: Iterable[str]) -> int:
    """Lift the locks and forget the failures of these usernames from every address; returns the pairs cleared."""
    deleted, _ = LoginLock.objects.filter(username__in={pair_username(u) for u in usernames}).delete()
    return deleted
