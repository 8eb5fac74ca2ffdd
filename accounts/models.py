"""Users and their API tokens."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone


class User(AbstractUser):
    """A person using the platform. Secrets are stored encrypted (see accounts.crypto), never in clear."""

    email = models.EmailField("email address", unique=True)
    display_name = models.CharField(max_length=150, blank=True)
    # Hugging Face token, encrypted with MultiFernet; only its last 4 characters are ever shown.
    hf_token_encrypted = models.TextField(blank=True, default="", editable=False)
    hf_token_last4 = models.CharField(max_length=4, blank=True, default="")
    hf_username = models.CharField(max_length=150, blank=True, default="")
    hf_token_saved_at = models.DateTimeField(null=True, blank=True)
    # Weights & Biases API key (experiment tracking), encrypted and shown like the HF token: last 4 characters only.
    wandb_key_encrypted = models.TextField(blank=True, default="", editable=False)
    wandb_key_last4 = models.CharField(max_length=4, blank=True, default="")
    wandb_key_saved_at = models.DateTimeField(null=True, blank=True)
    # Sign-in protection, a summary for operators: locks apply per (username, address) pair (LoginLock), so these
    # say how the account is being tried, not whether its owner may sign in. failed_login_count: failures since the
    # last success within the lockout window, from any address; locked_until: the latest lock of one of its pairs.
    failed_login_count = models.PositiveIntegerField(default=0)
    last_failed_login = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    # Per-user quota overrides set by operators; missing keys take settings.DEFAULT_QUOTAS.
    quota_overrides = models.JSONField(default=dict, blank=True)
    # --- Notifications: email and an optional webhook when a job succeeds or fails.
    notify_email = models.BooleanField(default=True)
    webhook_url = models.URLField(max_length=500, blank=True, default="")
    # HMAC key for the X-Finetune-Signature header, encrypted like the HF token (accounts.crypto).
    webhook_secret_encrypted = models.TextField(blank=True, default="", editable=False)

    class Meta:
        ordering = ["id"]

    @property
    def has_hf_token(self) -> bool:
        return bool(self.hf_token_encrypted)

    @property
    def has_wandb_key(self) -> bool:
        return bool(self.wandb_key_encrypted)

    @property
    def is_locked(self) -> bool:
        """Whether sign-in to this account is locked from at least one address."""
        return self.locked_until is not None and self.locked_until > timezone.now()

    @property
    def has_webhook_secret(self) -> bool:
        return bool(self.webhook_secret_encrypted)

    def quotas(self) -> dict[str, Any]:
        """The effective quotas: defaults from settings overridden per user."""
        return {**settings.DEFAULT_QUOTAS, **(self.quota_overrides or {})}


def hash_token_key(key: str) -> str:
    """SHA-256 of an API token key: only the hash is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """A token for scripts (`Authorization: Token <key>`). The key is shown once; only its hash is kept."""

    KEY_PREFIX = "ft_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def generate_key(cls) -> str:
        return cls.KEY_PREFIX + secrets.token_urlsafe(32)


# The operators' audit log: one row per action taken in the admin (job actions, quota overrides, deletions).
class AuditLog(models.Model):
    """Who did what to which object, and when. Written by `accounts.audit.record`; never edited."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_entries"
    )
    # The actor's username at the time, kept when the account is deleted later.
    actor_username = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=64, db_index=True)  # e.g. job.cancel, job.retry, user.quota_overrides
    target_type = models.CharField(max_length=64, db_index=True)  # app_label.model, e.g. training.trainingjob
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_repr = models.CharField(max_length=200, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    time = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="auditlog_target_idx")]

    def __str__(self) -> str:
        return f"{self.actor_username or 'system'} {self.action} {self.target_type}:{self.target_id}"


class LoginLock(models.Model):
    """Failed sign-ins of one (username, client address) pair, and the lock they led to.

    Keyed by the pair, never by the account alone, so nobody can lock an account's owner out from elsewhere; and kept
    for any submitted username, existing or not, so the answers never tell whether an account exists. A table rather
    than cache keys: operators see the locks and lift them in the admin (the users' "Unlock selected accounts"
    action, or this model's own list), they survive a cache flush or eviction, and a row lock counts parallel
    attempts exactly. Stale rows are pruned as new failures come in (accounts.signin)."""

    username = models.CharField(max_length=150)  # as submitted, stripped and lower-cased
    ip = models.CharField("client address", max_length=64)
    failures = models.PositiveIntegerField(default=0)  # within the lockout window, since the last lock or success
    last_failure = models.DateTimeField(db_index=True)
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_failure"]
        constraints = [models.UniqueConstraint(fields=["username", "ip"], name="loginlock_username_ip_uniq")]
        verbose_name = "sign-in lock"

    def __str__(self) -> str:
        return f"{self.username} from {self.ip}"

    @property
    def is_locked(self) -> bool:
        return self.locked_until is not None and self.locked_until > timezone.now()
