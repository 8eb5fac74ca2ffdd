"""The Hub client of one user, and Hub errors turned into messages a user can act on."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from accounts.models import User
from accounts.services import get_hf_token
from finetune.exceptions import ServiceError

logger = logging.getLogger(__name__)

NO_TOKEN_MESSAGE = (
    "Add your Hugging Face access token in your profile (Profile → Hugging Face token) first: finetune talks to the "
    "Hub with your own token."
)
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID_RE = re.compile(rf"^(?:({_NAME})/)?({_NAME})$")


def user_token(user: User) -> str:
    """The user's decrypted Hugging Face token, or a 400 asking them to add one in their profile."""
    token = get_hf_token(user)
    if not token:
        raise ServiceError(NO_TOKEN_MESSAGE, status_code=400)
    return token


def hub_client(token: str) -> Any:
    """A huggingface_hub client for this deployment's endpoint, authenticated as one user (never a global login)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=settings.HF_ENDPOINT, token=token, library_name="finetune")


@dataclass(frozen=True)
class HubFailure:
    """A Hub error turned into something a user can read; `retryable` when trying again later may work."""

    message: str
    status: int | None = None
    retryable: bool = False
    internal: bool = False


def describe_hub_error(exc: BaseException, *, repo_id: str = "", writing: bool = False) -> HubFailure:
    """Classify an exception from huggingface_hub (HTTP status, gated, not found, network) for the user."""
    import httpx2
    from huggingface_hub.errors import (
        FileMetadataError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cause: BaseException = exc
    if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ is not None:
        cause = exc.__cause__  # snapshot_download wraps the error that made it fall back to the (empty) cache
    page = f"{settings.HF_ENDPOINT}/{repo_id}" if repo_id else settings.HF_ENDPOINT
    if isinstance(cause, GatedRepoError):
        return HubFailure(f"{repo_id} is a gated model: request access on its Hub page ({page}) with the account "
                          "your token belongs to, wait for approval, then try again.", 403)
    if isinstance(cause, RevisionNotFoundError):
        return HubFailure(f"The requested revision of {repo_id} does not exist on the Hub.", 404)
    if isinstance(cause, HfHubHTTPError):
        code = cause.response.status_code if cause.response is not None else None
        server = (cause.server_message or "").strip().splitlines()[0] if cause.server_message else ""
        if code == 401 and not isinstance(cause, RepositoryNotFoundError) or "Invalid credentials" in server:
            return HubFailure("The Hugging Face Hub rejected your token (invalid, expired or revoked): save a new "
                              "token in your profile.", 401)
        if isinstance(cause, RepositoryNotFoundError) or code == 404:
            what = f"repository {repo_id}" if repo_id else "resource"
            return HubFailure(f"The Hub has no {what}, or your token cannot see it (it may be private).", 404)
        if code == 403:
            if writing:
                return HubFailure("The Hub refused the upload (HTTP 403): your token has no write access to "
                                  f"{repo_id.split('/')[0] or 'this namespace'}. Use a token with write permission."
                                  + (f" Hub said: {server}" if server else ""), 403)
            said = f" {server}" if server else ""
            return HubFailure(f"The Hub refused access to {repo_id} (HTTP 403).{said}", 403)
        if code == 429:
            return HubFailure("The Hugging Face Hub is rate-limiting requests (HTTP 429); retry in a few minutes.",
                              429, retryable=True)
        if code is not None and code >= 500:
            return HubFailure(f"The Hugging Face Hub had an internal error (HTTP {code}); retry later.", code,
                              retryable=True)
        said = f": {server}" if server else "."
        return HubFailure(f"The Hugging Face Hub refused the request (HTTP {code}){said}", code)
    if isinstance(cause, FileMetadataError):
        return HubFailure(f"{settings.HF_ENDPOINT} answered without the file metadata the Hub sends: check "
                          "HF_ENDPOINT.")
    if isinstance(cause, httpx2.TransportError | OfflineModeIsEnabled | ConnectionError | TimeoutError) or isinstance(
            exc, LocalEntryNotFoundError):
        return HubFailure(f"Could not reach the Hugging Face Hub at {settings.HF_ENDPOINT}; check the network and "
                          "retry.", None, retryable=True)
    if isinstance(cause, ValueError):
        return HubFailure(f"The Hub rejected the request: {cause}")
    return HubFailure("Internal error while talking to the Hugging Face Hub; see the server logs.", internal=True)


def service_error(exc: Exception, repo_id: str = "") -> ServiceError:
    """A synchronous Hub call failed: answer the API request with a clear status."""
    failure = describe_hub_error(exc, repo_id=repo_id)
    if failure.internal:
        logger.exception("Hub call failed for %s", repo_id or "search")
    status = {401: 400, 403: 403, 404: 404, 429: 429}.get(failure.status or 0, 502)
    return ServiceError(failure.message, status_code=status)


def check_repo_id(repo_id: str, *, field_name: str = "repo_id", namespace_required: bool = True) -> str:
    """`namespace/name` as the Hub accepts it (letters, digits, `-`, `_`, `.`; no `--` or `..`; ≤ 96 characters)."""
    value = (repo_id or "").strip()
    match = _REPO_ID_RE.match(value)
    malformed = not match or "--" in value or ".." in value or value.endswith(".git")
    if malformed or (namespace_required and "/" not in value):
        example = "namespace/name" if namespace_required else "name or namespace/name"
        raise ServiceError(f"{value!r} is not a valid Hub repository id (expected {example}, with letters, digits, "
                           "'-', '_' or '.').", field=field_name)
    return value
