"""The Hub client of one user, and Hub errors turned into messages a user can act on."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

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

    apply_upload_protocol()
    return HfApi(endpoint=settings.HF_ENDPOINT, token=token, library_name="finetune")


def apply_upload_protocol() -> str:
    """Make huggingface_hub take the upload path `HF_UPLOAD_PROTOCOL` names (its `HF_HUB_DISABLE_XET`, read at each
    transfer, so this holds for the whole process); returns the path taken: "Xet", or "LFS" (also without hf_xet)."""
    from huggingface_hub import constants
    from huggingface_hub.utils._runtime import is_xet_available

    protocol = str(settings.HF_UPLOAD_PROTOCOL or "").strip().lower()
    if protocol not in ("xet", "lfs"):
        raise ImproperlyConfigured(f"HF_UPLOAD_PROTOCOL must be xet or lfs, not {settings.HF_UPLOAD_PROTOCOL!r}")
    constants.HF_HUB_DISABLE_XET = protocol == "lfs"
    return "Xet" if is_xet_available() else "LFS"


@dataclass(frozen=True)
class HubFailure:
    """A Hub error turned into something a user can read; `retryable` when trying again later may work."""

    message: str
    status: int | None = None
    retryable: bool = False
    internal: bool = False


# An HTTP status written into an error's text: hf_xet's "HTTP status client error (403 Forbidden)" (it raises a plain
# ConnectionError for any failed request), or "HTTP 403" / "403 Client Error" / "status code 403" from wrappers.
_STATUS_IN_TEXT = (
    re.compile(r"HTTP status (?:client|server) error \((\d{3})\b"),
    re.compile(r"\bHTTP(?: error| status(?: code)?)?[ :]+(\d{3})\b", re.I),
    re.compile(r"\b(\d{3}) (?:Client|Server) Error\b"),
    re.compile(r"\bstatus(?:[ _]code)?[ :=]+(\d{3})\b", re.I),
)
_XET_TOKEN_URL = re.compile(r"/xet-(write|read)-token\b")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and those it came from (`__cause__`, else an unsuppressed `__context__`), outermost first."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 8 and all(current is not seen for seen in out):
        out.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return out


def _status_in_text(err: BaseException) -> int | None:
    """The 4xx/5xx HTTP status an error's message names, if any."""
    text = str(err)
    for pattern in _STATUS_IN_TEXT:
        match = pattern.search(text)
        if match and 400 <= int(match.group(1)) <= 599:
            return int(match.group(1))
    return None


def _xet_token_kind(text: str) -> str:
    """ "write" or "read" when the failed request was for a Xet storage token, else ""."""
    match = _XET_TOKEN_URL.search(text)
    return match.group(1) if match else ""


def _status_failure(
    code: int | None, server: str, *, repo_id: str, writing: bool, xet_token: str = "", repo_missing: bool = False
) -> HubFailure:
    """What an HTTP status from the Hub means for the user (`xet_token`: "write"/"read" when the Hub's Xet storage
    token endpoint answered it)."""
    if code == 401 and not repo_missing or "Invalid credentials" in server:
        return HubFailure(
            "The Hugging Face Hub rejected your token (invalid, expired or revoked): save a new "
            "token in your profile.",
            401,
        )
    if code == 429:
        return HubFailure(
            "The Hugging Face Hub is rate-limiting requests (HTTP 429); retry in a few minutes.", 429, retryable=True
        )
    if code is not None and code >= 500:
        return HubFailure(
            f"The Hugging Face Hub had an internal error (HTTP {code}); retry later.", code, retryable=True
        )
    said = f" Hub said: {server}" if server else ""
    if xet_token:
        access = f"{xet_token} access to {repo_id.split('/')[0] if xet_token == 'write' else repo_id}"
        why = {
            403: f" your token has no {access}, or this Hub does not allow Xet transfers.",
            404: " the repository is gone, or this Hub does not offer Xet storage.",
        }.get(code, " it was refused.")
        instead = "upload through Git LFS" if xet_token == "write" else "download over plain HTTPS"
        return HubFailure(
            f"The Hub refused a Xet storage {xet_token} token for {repo_id or 'this repository'} "
            f"(HTTP {code}):{why} An operator can set HF_UPLOAD_PROTOCOL=lfs to {instead} instead."
            f"{said}",
            code,
        )
    if repo_missing or code == 404:
        what = f"repository {repo_id}" if repo_id else "resource"
        return HubFailure(f"The Hub has no {what}, or your token cannot see it (it may be private).", 404)
    if code == 403:
        if writing:
            return HubFailure(
                "The Hub refused the upload (HTTP 403): your token has no write access to "
                f"{repo_id.split('/')[0] or 'this namespace'}. Use a token with write permission.{said}",
                403,
            )
        return HubFailure(f"The Hub refused access to {repo_id} (HTTP 403).{said}", 403)
    return HubFailure(
        f"The Hugging Face Hub refused the request (HTTP {code}){f': {server}' if server else '.'}", code
    )


def describe_hub_error(exc: BaseException, *, repo_id: str = "", writing: bool = False) -> HubFailure:
    """Classify an exception from huggingface_hub or hf_xet (HTTP status, gated, not found, network) for the user.
    The exception and those it was raised from are read in turn, the first that tells what happened wins: a typed Hub
    error, else an HTTP status in the text (hf_xet raises a plain ConnectionError naming it, wrappers a RuntimeError),
    else a network error; so a 4xx from the Hub is never reported as "could not reach the Hub"."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    chain = _chain(exc)
    for err in chain:
        failure = _describe_one(err, repo_id=repo_id, writing=writing)
        if failure is not None:
            return failure
    if isinstance(exc, LocalEntryNotFoundError):  # snapshot_download fell back to an empty cache: no answer came
        return _unreachable()
    rejected = next((e for e in chain if isinstance(e, ValueError)), None)
    if rejected is not None:
        return HubFailure(f"The Hub rejected the request: {rejected}")
    return HubFailure("Internal error while talking to the Hugging Face Hub; see the server logs.", internal=True)


def _unreachable() -> HubFailure:
    return HubFailure(
        f"Could not reach the Hugging Face Hub at {settings.HF_ENDPOINT}; check the network and retry.",
        None,
        retryable=True,
    )


def _describe_one(err: BaseException, *, repo_id: str, writing: bool) -> HubFailure | None:
    """What one exception of the chain says happened, or None when it says nothing (look at what it wraps)."""
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

    if isinstance(err, GatedRepoError):
        page = f"{settings.HF_ENDPOINT}/{repo_id}" if repo_id else settings.HF_ENDPOINT
        return HubFailure(
            f"{repo_id} is a gated model: request access on its Hub page ({page}) with the account "
            "your token belongs to, wait for approval, then try again.",
            403,
        )
    if isinstance(err, RevisionNotFoundError):
        return HubFailure(f"The requested revision of {repo_id} does not exist on the Hub.", 404)
    if isinstance(err, HfHubHTTPError):
        code = err.response.status_code if err.response is not None else None
        server = (err.server_message or "").strip().splitlines()[0] if err.server_message else ""
        return _status_failure(
            code,
            server,
            repo_id=repo_id,
            writing=writing,
            xet_token=_xet_token_kind(str(err)),
            repo_missing=isinstance(err, RepositoryNotFoundError),
        )
    if isinstance(err, LocalEntryNotFoundError):  # snapshot_download wraps the error that made it use the cache
        return None
    in_text = _status_in_text(err)
    if in_text is not None:
        return _status_failure(in_text, "", repo_id=repo_id, writing=writing, xet_token=_xet_token_kind(str(err)))
    if type(err).__name__ == "XetAuthenticationError":  # hf_xet's, when its storage refuses the Xet token
        return HubFailure(
            f"The Hub's Xet storage refused the upload's credentials for {repo_id or 'this upload'}: "
            "check that your token can write there, then retry.",
            403,
        )
    if isinstance(err, FileMetadataError):
        return HubFailure(
            f"{settings.HF_ENDPOINT} answered without the file metadata the Hub sends: check HF_ENDPOINT."
        )
    if isinstance(err, httpx2.TransportError | OfflineModeIsEnabled | ConnectionError | TimeoutError):
        return _unreachable()
    return None


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
        raise ServiceError(
            f"{value!r} is not a valid Hub repository id (expected {example}, with letters, digits, '-', '_' or '.').",
            field=field_name,
        )
    return value
