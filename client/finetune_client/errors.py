"""What the client raises: every error is a FinetuneError, so a script can catch them all at once."""

from __future__ import annotations

from typing import Any


class FinetuneError(Exception):
    """Anything that went wrong talking to the platform."""


class ApiError(FinetuneError):
    """The server answered with an error status: `detail` and the per-field `errors` of its JSON body."""

    def __init__(
        self, status: int, detail: str, errors: dict[str, Any] | None = None, *, method: str = "", url: str = ""
    ) -> None:
        self.status = status
        self.detail = detail
        self.errors = errors or {}
        self.method = method
        self.url = url
        super().__init__(str(self))

    def __str__(self) -> str:
        fields = []
        for name, messages in self.errors.items():
            text = " ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
            if text not in self.detail:  # the detail often repeats the one field error
                fields.append(f"{name}: {text}")
        return f"{self.detail} (HTTP {self.status})" + ("; " + "; ".join(fields) if fields else "")


class AuthError(ApiError):
    """401 or 403: the token is missing, wrong or revoked (or the user may not do this)."""


class ConnectionFailed(FinetuneError):
    """The server could not be reached (refused, timed out, DNS)."""


class WaitTimeout(FinetuneError):
    """Waiting for a job or task gave up before it finished."""


class TaskFailed(FinetuneError):
    """A job, export, push, Ollama import or dataset validation ended without success.

    `kind` says which ("job", "export", "push", "ollama-import", "dataset"), `status` how it ended (`failed`,
    `cancelled`, `invalid`) and `result` is the object as the API last returned it."""

    def __init__(self, kind: str, result: dict[str, Any]) -> None:
        self.kind = kind
        self.result = result
        self.status = str(result.get("status") or "")
        self.error = str(result.get("error") or "")
        super().__init__(f"{kind} {result.get('id')} {self.status}" + (f": {self.error}" if self.error else ""))
