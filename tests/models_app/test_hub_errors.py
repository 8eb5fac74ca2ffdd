"""Hub errors say what happened: `describe_hub_error` reads the HTTP status of a refusal wherever it arrives (a typed
huggingface_hub error, one wrapped in a RuntimeError's `__cause__`, or the text of hf_xet's plain ConnectionError),
and keeps "could not reach the Hub" for requests that got no answer. The messages hf_xet writes are copied from what
hf_xet 1.8 raised against the fake Hub (tests/fakes/hub.py)."""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

from models_app.hub import describe_hub_error

REPO = "alice-hf/tiny-alpaca"
XET_TOKEN_URL = f"http://127.0.0.1:8/api/models/{REPO}/xet-write-token/main"


def _hub_error(
    status: int,
    url: str = f"http://127.0.0.1:8/api/models/{REPO}/commit/main",
    cls: type[HfHubHTTPError] = HfHubHTTPError,
    server: str | None = None,
) -> HfHubHTTPError:
    response = httpx2.Response(status, request=httpx2.Request("GET", url))
    return cls(f"{status} Client Error for url: {url}", response=response, server_message=server)


def _xet(status: int, reason: str, kind: str = "client") -> ConnectionError:
    """What hf_xet raises when the Hub answers its token request (or a storage request) with an HTTP error."""
    return ConnectionError(
        f"Network error: Request error: HTTP status {kind} error ({status} {reason}), domain: {XET_TOKEN_URL}"
    )


@pytest.mark.parametrize(
    "status,reason,expected",
    [
        (403, "Forbidden", "your token has no write access to alice-hf"),
        (404, "Not Found", "does not offer Xet storage"),
        (400, "Bad Request", "it was refused"),
    ],
)
def test_a_xet_write_token_refused_by_the_hub_is_not_could_not_reach(status, reason, expected):
    failure = describe_hub_error(_xet(status, reason), repo_id=REPO, writing=True)
    assert "Could not reach" not in failure.message, failure.message
    assert failure.status == status and not failure.retryable and not failure.internal
    assert f"Xet storage write token for {REPO} (HTTP {status})" in failure.message and expected in failure.message
    assert "HF_UPLOAD_PROTOCOL=lfs" in failure.message


def test_a_xet_token_refusal_for_a_revoked_token_or_an_overloaded_hub():
    revoked = describe_hub_error(_xet(401, "Unauthorized"), repo_id=REPO, writing=True)
    assert revoked.status == 401 and "rejected your token" in revoked.message and not revoked.retryable
    busy = describe_hub_error(_xet(503, "Service Unavailable", "server"), repo_id=REPO, writing=True)
    assert busy.status == 503 and "internal error (HTTP 503)" in busy.message and busy.retryable


def test_a_refusal_wrapped_in_a_runtime_error_is_read_from_its_cause_or_its_text():
    try:
        try:
            raise _hub_error(403, XET_TOKEN_URL)
        except HfHubHTTPError as inner:
            raise RuntimeError("Xet upload failed") from inner
    except RuntimeError as outer:
        wrapped = outer
    failure = describe_hub_error(wrapped, repo_id=REPO, writing=True)
    assert failure.status == 403 and "Xet storage write token" in failure.message and not failure.internal
    in_text = describe_hub_error(
        RuntimeError("Data processing error: CAS service error : HTTP 403 for https://cas.example/v1/xorbs"),
        repo_id=REPO,
        writing=True,
    )
    assert in_text.status == 403 and "refused the upload (HTTP 403)" in in_text.message
    unknown = describe_hub_error(RuntimeError("commit failed"), repo_id=REPO, writing=True)
    assert unknown.internal  # nothing says what happened: an internal error, logged with its traceback


def test_typed_hub_errors_keep_their_messages():
    missing = describe_hub_error(_hub_error(404, cls=RepositoryNotFoundError), repo_id=REPO)
    assert "has no repository" in missing.message
    forbidden = describe_hub_error(_hub_error(403, server="Write access denied"), repo_id=REPO, writing=True)
    assert forbidden.status == 403 and "no write access to alice-hf" in forbidden.message
    assert forbidden.message.endswith("Hub said: Write access denied")
    other = describe_hub_error(_hub_error(422, server="Bad file"), repo_id=REPO)
    assert other.message == "The Hugging Face Hub refused the request (HTTP 422): Bad file"


def test_no_answer_is_still_could_not_reach():
    dropped = ConnectionError(
        f"Network error: Request middleware error: error sending request for url ({XET_TOKEN_URL})"
    )  # hf_xet, when the connection is dropped
    for exc in (dropped, httpx2.ConnectError("connection refused"), TimeoutError()):
        failure = describe_hub_error(exc, repo_id=REPO, writing=True)
        assert "Could not reach" in failure.message and failure.retryable and failure.status is None
    try:
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache") from httpx2.ConnectError(
            "down"
        )
    except LocalEntryNotFoundError as exc:
        assert "Could not reach" in describe_hub_error(exc, repo_id=REPO).message


def test_the_outermost_error_that_tells_what_happened_wins():
    """A network error raised while huggingface_hub handled an earlier answer (e.g. create_repo's 409) is a network
    error, not that earlier answer."""
    try:
        try:
            raise _hub_error(409)
        except HfHubHTTPError:
            raise httpx2.ConnectError("connection reset")  # noqa: B904  (implicitly chained, as in the library)
    except httpx2.ConnectError as exc:
        failure = describe_hub_error(exc, repo_id=REPO, writing=True)
    assert "Could not reach" in failure.message and failure.retryable


def test_xet_storage_refusing_its_credentials_is_said_plainly():
    xet_auth = type("XetAuthenticationError", (PermissionError,), {})  # hf_xet's, without importing hf_xet
    failure = describe_hub_error(xet_auth("token refresh failed"), repo_id=REPO, writing=True)
    assert failure.status == 403 and "Xet storage refused the upload's credentials" in failure.message


def test_the_upload_protocol_setting_drives_huggingface_hub(settings, monkeypatch):
    import huggingface_hub.constants
    from django.core.exceptions import ImproperlyConfigured

    from models_app.hub.client import apply_upload_protocol

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", False)
    settings.HF_UPLOAD_PROTOCOL = "LFS"
    assert apply_upload_protocol() == "LFS" and huggingface_hub.constants.HF_HUB_DISABLE_XET is True
    settings.HF_UPLOAD_PROTOCOL = "xet"
    assert apply_upload_protocol() == "Xet" and huggingface_hub.constants.HF_HUB_DISABLE_XET is False  # hf_xet here
    settings.HF_UPLOAD_PROTOCOL = "ftp"
    with pytest.raises(ImproperlyConfigured, match="HF_UPLOAD_PROTOCOL must be xet or lfs"):
        apply_upload_protocol()
