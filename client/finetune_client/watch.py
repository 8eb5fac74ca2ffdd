"""A training job's events as they happen: the `/ws/training/<id>/` websocket, with the REST backfill by `seq` as
the source of truth, as the web app's job page does (frontend/src/hooks/useJobSocket.ts).

Metric points (and, when asked, log lines) are each yielded once and in `seq` order: the backfill runs on every
(re)connect, whenever a pushed point reveals a gap, and every `safety_interval` seconds while the socket is open. A
dropped socket is reconnected with exponential backoff and jitter (1 s, 2 s, 4 s ... up to 30 s) while the REST API
is polled every `poll_interval` seconds, so nothing is missed and the end of the job is seen even while disconnected.
A server that refuses the socket (403 / close code 4403) leaves the watcher polling.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from .client import JOB_FINISHED, JSON
from .errors import ApiError, ConnectionFailed

if TYPE_CHECKING:
    from .client import Client

BASE_DELAY_S = 1.0
MAX_DELAY_S = 30.0
PAGE = 1000
REFUSED_CODES = (401, 403, 4403)


def reconnect_delay(attempt: int) -> float:
    """Wait before reconnect attempt `attempt` (0-based): doubling from 1 s, capped at 30 s, ±20 % jitter."""
    return min(MAX_DELAY_S, BASE_DELAY_S * 2.0**attempt) * (0.8 + random.random() * 0.4)


class _SeqStore:
    """Seen seqs, and the highest seq a complete backfill confirmed (the next backfill asks for what follows)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.confirmed = 0
        self.highest = 0

    def add(self, seq: int) -> bool:
        if seq in self.seen:
            return False
        self.seen.add(seq)
        self.highest = max(self.highest, seq)
        return True


class JobWatcher:
    """Iterate to get the job's events, as the websocket sends them (each a dict with a `type`):

    - `{"type": "metric", "seq", "kind": "metric"|"eval", "step", "loss", "eval_loss", "learning_rate", "eta_s",
      "total_steps", ...}`, each seq once, in order;
    - `{"type": "log", "seq", "level", "line"}` when `logs=True`;
    - `{"type": "status", "status", "phase", "error", ...}` when the status or phase changes.

    The iteration ends after the job finished (`succeeded`, `failed`, `cancelled`); `job` is then its final row.
    While the server is unreachable (or answers 5xx) the watcher keeps trying, for `outage_timeout` seconds at most.
    `socket_points`/`backfilled_points` count where the points came from, `connects` the sockets opened."""

    def __init__(
        self,
        client: Client,
        job_id: int,
        *,
        logs: bool = False,
        reconnect: bool = True,
        poll_interval: float = 3.0,
        safety_interval: float = 15.0,
        open_timeout: float = 10.0,
        outage_timeout: float = 600.0,
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.include_logs = logs
        self.reconnect = reconnect
        self.poll_interval = poll_interval
        self.safety_interval = safety_interval
        self.open_timeout = open_timeout
        self.outage_timeout = outage_timeout
        self.job: JSON | None = None
        self.mode = "connecting"  # "websocket" while a socket is open, "polling" otherwise
        self.socket_refused = False
        self.connects = 0
        self.socket_points = 0
        self.backfilled_points = 0
        self._metrics = _SeqStore()
        self._logs = _SeqStore()
        self._status: tuple[str, str] | None = None
        self._ws: ClientConnection | None = None
        self._done = False
        self._outage_since: float | None = None

    def __iter__(self) -> Iterator[JSON]:
        yield from self._refresh()
        yield from self._backfill()
        attempt = 0
        while not self._done:
            if not self.socket_refused:
                opened = yield from self._follow_socket()
                if self._done:
                    break
                if opened:
                    attempt = 0
                if not self.reconnect and not self.socket_refused:
                    self.mode = "polling"
                    self.socket_refused = True  # poll to the end instead of reconnecting
            self.mode = "polling"
            wait = self.poll_interval if self.socket_refused else reconnect_delay(attempt)
            attempt += 1
            yield from self._poll_for(wait)

    def close(self) -> None:
        """Drop the open socket (the iteration reconnects while the job runs); for tests and for Ctrl-C."""
        if self._ws is not None:
            self._ws.close()

    # --- the socket ----------------------------------------------------------------------------------------------

    def _follow_socket(self) -> Generator[JSON, None, bool]:
        """Follow one socket until it drops or the job ends; returns whether it opened."""
        url = self.client.websocket_url(f"/ws/training/{self.job_id}/")
        try:
            ws = connect(
                url,
                additional_headers=self.client.websocket_headers(),
                origin=Origin(self.client.url),
                open_timeout=self.open_timeout,
                proxy=None,
            )
        except InvalidStatus as exc:
            if exc.response.status_code in REFUSED_CODES:
                self.socket_refused = True
            return False
        except (OSError, TimeoutError, WebSocketException):
            return False
        self._ws = ws
        self.connects += 1
        self.mode = "websocket"
        try:
            # Whatever was published while we were away, and a status change we may have missed.
            yield from self._backfill()
            yield from self._refresh()
            self._outage_since = None
            while not self._done:
                try:
                    raw = ws.recv(timeout=self.safety_interval)
                except TimeoutError:
                    yield from self._backfill()
                    yield from self._refresh()
                    continue
                yield from self._handle(raw)
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code in REFUSED_CODES:
                self.socket_refused = True
        except (ConnectionFailed, ApiError) as exc:  # the REST side went away: reconnect later, polling meanwhile
            self._outage(exc)
        finally:
            self._ws = None
            ws.close()
        return True

    def _handle(self, raw: str | bytes) -> Iterator[JSON]:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "metric" and isinstance(message.get("seq"), int):
            yield from self._pushed(self._metrics, message, is_metric=True)
        elif kind == "log" and self.include_logs and isinstance(message.get("seq"), int):
            yield from self._pushed(self._logs, message, is_metric=False)
        elif kind == "status":
            status = str(message.get("status") or "")
            if status in JOB_FINISHED:
                # The points before the end are stored before the status; then the final row (model, error).
                yield from self._backfill()
                yield from self._refresh()
                if not self._done:  # the row lags the message (it cannot, but never hang on it)
                    yield from self._status_event(message)
                    self._done = True
            else:
                yield from self._status_event(message)

    def _pushed(self, store: _SeqStore, message: JSON, *, is_metric: bool) -> Iterator[JSON]:
        seq = int(message["seq"])
        if seq > store.highest + 1:  # a gap: fetch what is missing first, so points stay in order
            yield from self._backfill()
        if store.add(seq):
            if is_metric:
                self.socket_points += 1
            yield message

    # --- the REST side -------------------------------------------------------------------------------------------

    def _poll_for(self, seconds: float) -> Iterator[JSON]:
        deadline = time.monotonic() + seconds
        while not self._done:
            time.sleep(max(0.0, min(self.poll_interval, deadline - time.monotonic())))
            try:
                yield from self._backfill()
                yield from self._refresh()
                self._outage_since = None
            except (ConnectionFailed, ApiError) as exc:
                self._outage(exc)
            if time.monotonic() >= deadline:
                return

    def _outage(self, exc: ConnectionFailed | ApiError) -> None:
        """Tolerate a server that is away (unreachable, 5xx) for up to `outage_timeout` seconds; re-raise the rest."""
        if isinstance(exc, ApiError) and exc.status < 500:
            raise exc
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
        if now - self._outage_since > self.outage_timeout:
            raise exc

    def _backfill(self) -> Iterator[JSON]:
        """Every point (and log line) after the confirmed watermark, page by page."""
        sources: list[tuple[_SeqStore, str, bool]] = [(self._metrics, "metric", True)]
        if self.include_logs:
            sources.append((self._logs, "log", False))
        for store, kind, is_metric in sources:
            while True:
                fetch = self.client.jobs.metrics if is_metric else self.client.jobs.logs
                page = fetch(self.job_id, after_seq=store.confirmed, limit=PAGE)
                for item in page:
                    seq = item.get("seq")
                    if isinstance(seq, int) and store.add(seq):
                        if is_metric:
                            self.backfilled_points += 1
                        yield _as_event(kind, item)
                if page:
                    store.confirmed = max(store.confirmed, int(page[-1]["seq"]))
                if len(page) < PAGE:
                    break

    def _refresh(self) -> Iterator[JSON]:
        """Read the job row; a status change becomes an event, and a finished job ends the iteration (after the
        points stored before it ended)."""
        job = self.client.jobs.get(self.job_id)
        self.job = job
        if job["status"] in JOB_FINISHED and not self._done:
            yield from self._backfill()
            self._done = True
        yield from self._status_event(
            {
                "type": "status",
                "status": job["status"],
                "phase": job.get("phase") or "",
                "error": job.get("error") or "",
                "model": job.get("model"),
            }
        )

    def _status_event(self, message: JSON) -> Iterator[JSON]:
        key = (str(message.get("status") or ""), str(message.get("phase") or ""))
        if key[0] == "running" and self._status is not None and self._status[0] == "running" and not key[1]:
            return  # a bare "running" after a phase change says nothing new
        if key != self._status:
            self._status = key
            yield dict(message)


def _as_event(kind: str, item: JSON) -> JSON:
    """A backfilled point or line shaped like the websocket's message (the point's `extra` merged in)."""
    event: dict[str, Any] = {"type": kind}
    extra = item.get("extra")
    event.update({k: v for k, v in item.items() if k != "extra"})
    if isinstance(extra, dict):
        for k, v in extra.items():
            event.setdefault(k, v)
    return event
