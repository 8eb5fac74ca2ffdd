"""The Hugging Face Hub as seen by accounts: `whoami` through huggingface_hub, endpoint from settings.HF_ENDPOINT."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubIdentity:
    """Who a token belongs to."""

    username: str
    token_role: str = ""


class HubTokenInvalid(Exception):
    """The Hub refused the token (401/403)."""


class HubUnavailable(Exception):
    """The Hub could not be reached or answered with an error that is not about the token."""


def whoami(token: str) -> HubIdentity:
    """Ask the Hub who owns `token` (never logs the token)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=settings.HF_ENDPOINT)
    try:
        info = api.whoami(token=token)
    except HfHubHTTPError as exc:
        code = exc.response.status_code if exc.response is not None else None
        if code in (401, 403):
            raise HubTokenInvalid("The Hugging Face Hub rejected this token (it is invalid or revoked).") from None
        if code == 429:
            raise HubUnavailable(
                "The Hugging Face Hub is rate-limiting token checks; try again in a minute."
            ) from None
        logger.warning("Hub whoami failed with HTTP %s at %s", code, settings.HF_ENDPOINT)
        raise HubUnavailable(f"The Hugging Face Hub answered with an error (HTTP {code}); try again later.") from None
    except Exception as exc:  # network errors from the HTTP client
        logger.warning("Hub whoami could not reach %s: %s", settings.HF_ENDPOINT, type(exc).__name__)
        raise HubUnavailable(
            f"Could not reach the Hugging Face Hub at {settings.HF_ENDPOINT}; check the network and try again."
        ) from None
    name = info.get("name") if isinstance(info, dict) else None
    if not name:
        raise HubUnavailable("The Hugging Face Hub answered without a user name.")
    role = ""
    auth = info.get("auth") if isinstance(info, dict) else None
    if isinstance(auth, dict):
        role = str((auth.get("accessToken") or {}).get("role", ""))
    return HubIdentity(username=str(name), token_role=role)
