"""HttpCallback: posts run events to the platform's signed internal endpoint (used by the Modal backend).

The endpoint answers each post with ``{"stop": bool}``: that is how a cancel requested in the web app reaches a run
on a remote GPU within one step. Plain ``urllib`` (no extra dependency), short timeouts, a few retries; a lost post
never stops training (the dashboard backfills by sequence number).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from .base import BaseCallback, Event

logger = logging.getLogger(__name__)


class HttpCallback(BaseCallback):
    """Send every event as JSON to ``url`` with ``Authorization: Bearer <token>``."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0, retries: int = 3) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self._stop = False

    def post(self, payload: dict[str, Any], *, path: str = "") -> dict[str, Any]:
        """POST one JSON payload; returns the decoded answer ({} when the endpoint could not be reached)."""
        body = json.dumps(payload).encode()
        for attempt in range(self.retries):
            req = urllib.request.Request(
                self.url.rstrip("/") + "/" + path if path else self.url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (our own endpoint)
                    answer = json.loads(resp.read() or b"{}")
                    if answer.get("stop"):
                        self._stop = True
                    return answer
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403, 404, 410):  # not ours any more: stop rather than train for nobody
                    logger.warning("callback refused with HTTP %s; stopping", exc.code)
                    self._stop = True
                    return {}
                logger.warning("callback HTTP %s (attempt %s)", exc.code, attempt + 1)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                logger.warning("callback failed (attempt %s): %s", attempt + 1, exc)
            time.sleep(min(2**attempt, 5))
        return {}

    def on_event(self, event: Event) -> None:
        self.post({"events": [event.to_dict()]})

    def should_stop(self) -> bool:
        return self._stop
