"""Account workflows: sign-up, profile, password, API tokens, the Hugging Face token, the first administrator.
Sign-in and its lockout live in accounts.signin."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from finetune.exceptions import ServiceError

from . import crypto, hub
from .models import ApiToken, User, hash_token_key

logger = logging.getLogger(__name__)


def register_user(*, username: str, email: str, password: str) -> User:
    """Create an account after checking the username, the email and the password's strength."""
    username = username.strip()
    email = email.strip().lower()
    if User.objects.filter(username__iexact=username).exists():
        raise ServiceError("This username is already taken.", field="username")
    if User.objects.filter(email__iexact=email).exists():
        raise ServiceError("An account with this email already exists.", field="email")
    candidate = User(username=username, email=email)
    _validate_password(password, candidate, field="password")
    with transaction.atomic():
        user = User.objects.create_user(username=username, email=email, password=password)
    logger.info("user %s registered", user.pk)
    return user


def _validate_password(password: str, user: User, *, field: str) -> None:
    try:
        password_validation.validate_password(password, user)
    except DjangoValidationError as exc:
        raise ServiceError(" ".join(exc.messages), field=field) from None


def update_profile(
    user: User,
    *,
    display_name: str | None = None,
    email: str | None = None,
    notify_email: bool | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> User:
    """Change the display name, email and notification settings (webhook URL checked, its secret encrypted)."""
    fields = []
    # --- notifications
    if notify_email is not None:
        user.notify_email = bool(notify_email)
        fields.append("notify_email")
    if webhook_url is not None:
        user.webhook_url = validate_webhook_url(webhook_url)
        fields.append("webhook_url")
    if webhook_secret is not None:
        secret = webhook_secret.strip()
        if len(secret) > 256:
            raise ServiceError("The webhook secret is too long (256 characters at most).", field="webhook_secret")
        user.webhook_secret_encrypted = crypto.encrypt(secret) if secret else ""
        fields.append("webhook_secret_encrypted")
    if display_name is not None:
        user.display_name = display_name.strip()
        fields.append("display_name")
    if email is not None:
        email = email.strip().lower()
        if User.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
            raise ServiceError("An account with this email already exists.", field="email")
        user.email = email
        fields.append("email")
    if fields:
        user.save(update_fields=fields)
    return user


def validate_webhook_url(url: str) -> str:
    """A webhook URL must be an absolute http(s) URL; an empty string turns the webhook off."""
    from urllib.parse import urlsplit

    from django.core.validators import URLValidator

    url = url.strip()
    if not url:
        return ""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ServiceError(
            f"The webhook URL must start with http:// or https://{f' (got {scheme}://)' if scheme else ''}.",
            field="webhook_url",
        )
    try:
        URLValidator(schemes=["http", "https"])(url)
    except DjangoValidationError:
        raise ServiceError(
            "The webhook URL is not a valid URL (e.g. https://example.com/hooks/finetune).", field="webhook_url"
        ) from None
    if len(url) > 500:
        raise ServiceError("The webhook URL is too long (500 characters at most).", field="webhook_url")
    refusal = webhook_target_refusal(url)
    if refusal:
        raise ServiceError(refusal, field="webhook_url")
    return url


def webhook_target_refusal(url: str) -> str | None:
    """Why the platform must not call this webhook URL (None when it may).

    The server makes the request, so a user could otherwise point it at the deployment's own network: loopback,
    private ranges, link-local (cloud metadata at 169.254.169.254), multicast and reserved addresses are refused,
    for every address the host resolves to. ``NOTIFY_WEBHOOK_ALLOW_PRIVATE`` lifts this (development, tests, or a
    deployment whose receivers are internal)."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    from django.conf import settings

    if getattr(settings, "NOTIFY_WEBHOOK_ALLOW_PRIVATE", False):
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "The webhook URL has an invalid port."
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return f"The webhook host {host!r} does not resolve; use a public host name or address."
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            return (
                f"The webhook host {host!r} resolves to {address}, a loopback, private, link-local or reserved "
                "address: webhooks may only call public addresses (an operator can allow internal receivers with "
                "NOTIFY_WEBHOOK_ALLOW_PRIVATE)."
            )
    return None


def change_password(user: User, *, old_password: str, new_password: str) -> None:
    """Replace the password after checking the old one and the new one's strength."""
    if not user.check_password(old_password):
        raise ServiceError("The current password is incorrect.", field="old_password")
    _validate_password(new_password, user, field="new_password")
    user.set_password(new_password)
    user.save(update_fields=["password"])


@dataclass(frozen=True)
class CreatedToken:
    """A new API token with its key, which is shown once."""

    token: ApiToken
    key: str


def create_api_token(user: User, *, name: str) -> CreatedToken:
    """Create an API token; only the key's hash is stored."""
    name = name.strip()
    if not name:
        raise ServiceError("Give the token a name.", field="name")
    if user.api_tokens.count() >= 50:
        raise ServiceError("You already have 50 API tokens; revoke some first.", status_code=429)  # a quota
    key = ApiToken.generate_key()
    token = ApiToken.objects.create(user=user, name=name, prefix=key[:10], key_hash=hash_token_key(key))
    return CreatedToken(token=token, key=key)


def revoke_api_token(user: User, token_id: int) -> None:
    """Delete one of the user's API tokens (404 for anybody else's)."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        raise ServiceError("Not found.", status_code=404)


@dataclass(frozen=True)
class HfTokenStatus:
    """What the API may say about a stored Hugging Face token."""

    present: bool
    last4: str
    hf_username: str


def hf_token_status(user: User) -> HfTokenStatus:
    """The stored token's status (never the token)."""
    return HfTokenStatus(present=user.has_hf_token, last4=user.hf_token_last4, hf_username=user.hf_username)


def save_hf_token(user: User, *, token: str) -> HfTokenStatus:
    """Validate a Hugging Face token with the Hub's whoami and store it encrypted."""
    token = token.strip()
    if not token:
        raise ServiceError("Paste a Hugging Face access token.", field="token")
    if len(token) > 512 or any(c.isspace() for c in token):
        raise ServiceError("This does not look like a Hugging Face token.", field="token")
    try:
        identity = hub.whoami(token)
    except hub.HubTokenInvalid as exc:
        raise ServiceError(str(exc), field="token") from None
    except hub.HubUnavailable as exc:
        raise ServiceError(str(exc), status_code=502) from None
    user.hf_token_encrypted = crypto.encrypt(token)
    user.hf_token_last4 = token[-4:]
    user.hf_username = identity.username
    user.hf_token_saved_at = timezone.now()
    user.save(update_fields=["hf_token_encrypted", "hf_token_last4", "hf_username", "hf_token_saved_at"])
    logger.info("user %s saved a Hugging Face token for hub user %s", user.pk, identity.username)
    return hf_token_status(user)


def delete_hf_token(user: User) -> None:
    """Forget the user's Hugging Face token."""
    user.hf_token_encrypted = ""
    user.hf_token_last4 = ""
    user.hf_username = ""
    user.hf_token_saved_at = None
    user.save(update_fields=["hf_token_encrypted", "hf_token_last4", "hf_username", "hf_token_saved_at"])


def get_hf_token(user: User) -> str | None:
    """The decrypted token, for server-side calls to the Hub on the user's behalf only."""
    if not user.hf_token_encrypted:
        return None
    return crypto.decrypt(user.hf_token_encrypted)


@dataclass(frozen=True)
class WandbKeyStatus:
    """What the API may say about a stored Weights & Biases API key."""

    present: bool
    last4: str


def wandb_key_status(user: User) -> WandbKeyStatus:
    """The stored key's status (never the key)."""
    return WandbKeyStatus(present=user.has_wandb_key, last4=user.wandb_key_last4)


def save_wandb_key(user: User, *, key: str) -> WandbKeyStatus:
    """Store a Weights & Biases API key encrypted, for the user's training jobs with ``report_to: ["wandb"]``.

    Only its shape is checked (W&B keys are 40 or more printable characters without spaces): the training machine
    may reach W&B where this server cannot."""
    key = key.strip()
    if len(key) < 40 or len(key) > 256 or any(c.isspace() or not c.isprintable() for c in key):
        raise ServiceError(
            "This does not look like a Weights & Biases API key (40 or more characters, from wandb.ai/authorize).",
            field="key",
        )
    user.wandb_key_encrypted = crypto.encrypt(key)
    user.wandb_key_last4 = key[-4:]
    user.wandb_key_saved_at = timezone.now()
    user.save(update_fields=["wandb_key_encrypted", "wandb_key_last4", "wandb_key_saved_at"])
    logger.info("user %s saved a Weights & Biases API key", user.pk)
    return wandb_key_status(user)


def delete_wandb_key(user: User) -> None:
    """Forget the user's Weights & Biases API key."""
    user.wandb_key_encrypted = ""
    user.wandb_key_last4 = ""
    user.wandb_key_saved_at = None
    user.save(update_fields=["wandb_key_encrypted", "wandb_key_last4", "wandb_key_saved_at"])


def get_wandb_key(user: User) -> str | None:
    """The decrypted key, only for the environment of the user's own training runs."""
    if not user.wandb_key_encrypted:
        return None
    return crypto.decrypt(user.wandb_key_encrypted)


# Every column holding a secret encrypted with accounts.crypto (MultiFernet).
ENCRYPTED_FIELDS = ("hf_token_encrypted", "webhook_secret_encrypted", "wandb_key_encrypted")


def rotate_secrets() -> int:
    """Re-encrypt every stored secret (Hugging Face tokens, webhook secrets, W&B keys) under the newest key; returns how many
    were rewritten."""
    count = 0
    for field in ENCRYPTED_FIELDS:
        for pk in User.objects.exclude(**{field: ""}).values_list("pk", flat=True).iterator():
            with transaction.atomic():
                row = User.objects.select_for_update().get(pk=pk)
                value = getattr(row, field)
                if not value:
                    continue
                setattr(row, field, crypto.rotate(value))
                row.save(update_fields=[field])
                count += 1
    return count


def usage(user: User) -> dict[str, Any]:
    """Current usage against the quotas (see accounts.quotas)."""
    from . import quotas

    return quotas.usage(user)


def ensure_admin(*, username: str, email: str, password: str | None) -> tuple[User | None, str | None]:
    """Create the first superuser if there is none; returns (user, generated password or None). A given password must
    pass the password validators (ServiceError otherwise)."""
    if User.objects.filter(is_superuser=True).exists():
        return None, None
    import secrets

    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    # The same validators as every other password (a generated one passes them).
    try:
        password_validation.validate_password(password, User(username=username, email=email))
    except DjangoValidationError as exc:
        raise ServiceError(
            f"The administrator password is too weak: {' '.join(exc.messages)}", field="password"
        ) from None
    user = User.objects.create_superuser(username=username, email=email, password=password)
    return user, generated
