"""`Client(url, token)`: the platform's REST API (the paths of shared/API.md) as plain methods returning the API's JSON.

Every object comes back as the `dict` the API returns (ids, status, error, ...); long-running work (dataset
validation, training, exports, pushes, Ollama imports) has a `wait` that polls until it ends.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx2

from .errors import ApiError, AuthError, ConnectionFailed, TaskFailed, WaitTimeout

if TYPE_CHECKING:
    from .watch import JobWatcher

JSON = dict[str, Any]
Rows = list[JSON]  # (also where a method named `list` hides the builtin)
Progress = Callable[[int, int], None]  # (done, total) in bytes
PathLike = str | os.PathLike[str]

JOB_FINISHED = frozenset({"succeeded", "failed", "cancelled"})
TASK_FINISHED = frozenset({"succeeded", "failed"})
DATASET_PROCESSED = frozenset({"ready", "invalid"})
CHUNK = 1 << 16
_RETRIES = 3  # for idempotent requests: 503 (the web tier is busy) and connection errors


class Client:
    """One platform at `url`, authenticated with an API token (Settings → API tokens) or, with `Client.login`, a
    username and password (a browser-like session: cookie plus CSRF header).

    `datasets`, `jobs`, `models`, `exports`, `pushes` and `ollama` group the endpoints; `close()` (or `with`)
    releases the connections."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Accept": "application/json", "User-Agent": "finetune-client/0.1"}
        if token:
            headers["Authorization"] = f"Token {token}"
        self.http = httpx2.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
        self.datasets = Datasets(self)
        self.jobs = Jobs(self)
        self.models = Models(self)
        self.exports = Exports(self)
        self.pushes = Pushes(self)
        self.ollama = OllamaImports(self)

    @classmethod
    def login(cls, url: str, username: str, password: str, **kwargs: Any) -> Client:
        """A client signed in with a username and password (session cookie; unsafe requests send the CSRF token)."""
        client = cls(url, None, **kwargs)
        client.get("/api/auth/csrf/")
        client.post("/api/auth/login/", json={"username": username, "password": password})
        return client

    # --- plumbing ---------------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: Iterable[bytes] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON (None for an empty body); raise ApiError on 4xx/5xx."""
        response = self.send(method, path, json=json, params=params, content=content, headers=headers)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: Iterable[bytes] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok: Sequence[int] = (),
    ) -> httpx2.Response:
        """The raw response (statuses in `ok` are not errors); idempotent requests are retried when the server is
        busy (503 with Retry-After) or could not be reached."""
        method = method.upper()
        extra = dict(headers or {})
        if method not in ("GET", "HEAD", "OPTIONS") and "csrftoken" in self.http.cookies:
            extra.setdefault("X-CSRFToken", self.http.cookies["csrftoken"])
            extra.setdefault("Referer", self.url + "/")
        idempotent = method in ("GET", "HEAD", "OPTIONS", "DELETE")
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.http.request(method, path, json=json, params=params, content=content, headers=extra)
            except httpx2.TransportError as exc:
                if idempotent and attempt < _RETRIES and isinstance(exc, httpx2.ConnectError | httpx2.ReadError):
                    time.sleep(attempt)
                    continue
                raise ConnectionFailed(f"could not reach {self.url}: {exc}") from exc
            if response.status_code == 503 and idempotent and attempt < _RETRIES:
                time.sleep(min(10.0, _retry_after(response)))
                continue
            if response.status_code >= 400 and response.status_code not in ok:
                raise _api_error(response)
            return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None} or None)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def paginate(self, path: str, **params: Any) -> Iterator[JSON]:
        """Every item of a paginated list (`{count, next, previous, results}`), page after page."""
        query: dict[str, Any] | None = {k: v for k, v in params.items() if v is not None}
        url: str | None = path
        while url:
            page = self.request("GET", url, params=query)
            if isinstance(page, list):  # an unpaginated list
                yield from page
                return
            yield from page.get("results") or []
            url, query = page.get("next"), None  # `next` carries the query string

    def websocket_url(self, path: str) -> str:
        """`ws(s)://<host><path>` for this platform."""
        scheme, rest = self.url.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest + path

    def websocket_headers(self) -> dict[str, str]:
        """What a websocket handshake sends to authenticate: the token, or the session cookie."""
        headers = {}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        cookies = "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())
        if cookies:
            headers["Cookie"] = cookies
        return headers

    def me(self) -> JSON:
        """The signed-in user (`GET /api/auth/me/`): checks the credentials."""
        return dict(self.get("/api/auth/me/"))

    def create_token(self, name: str) -> str:
        """A new API token for scripts (needs a session: `Client.login`); the key is only shown now."""
        created = self.post("/api/auth/tokens/", {"name": name})
        return str(created["key"])

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Resource:
    def __init__(self, client: Client) -> None:
        self.client = client


class Datasets(_Resource):
    """`/api/datasets/`: upload, validation report, listing."""

    def list(self) -> Rows:
        return list(self.client.paginate("/api/datasets/"))

    def get(self, dataset_id: int) -> JSON:
        return dict(self.client.get(f"/api/datasets/{dataset_id}/"))

    def upload(
        self,
        files: PathLike | Sequence[PathLike],
        *,
        name: str | None = None,
        format: str | None = None,
        column_mapping: Mapping[str, str] | str | None = None,
        progress: Progress | None = None,
    ) -> JSON:
        """Upload one or more files as a new dataset (streamed; `progress(sent, total)` after every chunk). It comes
        back `uploaded`; validation runs on the server (`wait` for the verdict)."""
        paths = [Path(files)] if isinstance(files, str | os.PathLike) else [Path(f) for f in files]
        fields: dict[str, str] = {}
        if name:
            fields["name"] = name
        if format:
            fields["format"] = format
        if column_mapping:
            fields["column_mapping"] = column_mapping if isinstance(column_mapping, str) else _dumps(column_mapping)
        body = _Multipart(fields, paths, progress)
        response = self.client.request(
            "POST",
            "/api/datasets/",
            content=body,
            headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
        )
        return dict(response)

    def wait(
        self,
        dataset_id: int,
        *,
        timeout: float | None = None,
        interval: float = 1.0,
        on_update: Callable[[JSON], None] | None = None,
        raise_on_invalid: bool = False,
    ) -> JSON:
        """Poll until validation is done (`ready` or `invalid`); with `raise_on_invalid`, TaskFailed for invalid."""
        row = _poll(
            lambda: self.get(dataset_id), DATASET_PROCESSED, timeout, interval, on_update, f"dataset {dataset_id}"
        )
        if raise_on_invalid and row["status"] != "ready":
            raise TaskFailed("dataset", row)
        return row

    def report(self, dataset_id: int) -> JSON:
        """The validation report: verdict, rows, errors with line numbers, warnings, tokens (409 while processing)."""
        return dict(self.client.get(f"/api/datasets/{dataset_id}/report/"))

    def delete(self, dataset_id: int) -> None:
        self.client.delete(f"/api/datasets/{dataset_id}/")


class Jobs(_Resource):
    """`/api/training/jobs/`: create, inspect, cancel, resume, metrics and logs, live events."""

    def create(self, spec: Mapping[str, Any]) -> JSON:
        """Create a job from the API's body (`name, base_model, dataset, method, weights, hyperparameters, ...`)."""
        return dict(self.client.post("/api/training/jobs/", dict(spec)))

    def estimate(self, spec: Mapping[str, Any]) -> JSON:
        return dict(self.client.post("/api/training/estimate/", dict(spec)))

    def list(self, **filters: Any) -> Rows:
        """The user's jobs, newest first (filters: status, method, backend)."""
        return list(self.client.paginate("/api/training/jobs/", **filters))

    def get(self, job_id: int) -> JSON:
        return dict(self.client.get(f"/api/training/jobs/{job_id}/"))

    def cancel(self, job_id: int) -> JSON:
        return dict(self.client.post(f"/api/training/jobs/{job_id}/cancel/"))

    def resume(self, job_id: int) -> JSON:
        return dict(self.client.post(f"/api/training/jobs/{job_id}/resume/"))

    def continue_training(self, job_id: int, extra_epochs: float) -> JSON:
        return dict(self.client.post(f"/api/training/jobs/{job_id}/continue/", {"extra_epochs": extra_epochs}))

    def delete(self, job_id: int) -> None:
        self.client.delete(f"/api/training/jobs/{job_id}/")

    def metrics(self, job_id: int, *, after_seq: int = 0, limit: int | None = None) -> Rows:
        """Metric points with seq > after_seq, in order (a full page of `limit` means more may follow)."""
        return list(self.client.get(f"/api/training/jobs/{job_id}/metrics/", after_seq=after_seq, limit=limit))

    def logs(self, job_id: int, *, after_seq: int = 0, limit: int | None = None) -> Rows:
        return list(self.client.get(f"/api/training/jobs/{job_id}/logs/", after_seq=after_seq, limit=limit))

    def watch(self, job_id: int, **options: Any) -> JobWatcher:
        """The job's events as they happen (see JobWatcher): iterate until it ends."""
        from .watch import JobWatcher

        return JobWatcher(self.client, job_id, **options)

    def wait(
        self,
        job_id: int,
        *,
        on_event: Callable[[JSON], None] | None = None,
        raise_on_failure: bool = True,
        **options: Any,
    ) -> JSON:
        """Follow the job to its end (live over the websocket, backfilled by seq) and return it; TaskFailed when it
        failed or was cancelled (unless `raise_on_failure=False`)."""
        watcher = self.watch(job_id, **options)
        for event in watcher:
            if on_event is not None:
                on_event(event)
        job = watcher.job or self.get(job_id)
        if raise_on_failure and job["status"] != "succeeded":
            raise TaskFailed("job", job)
        return job


class Models(_Resource):
    """`/api/models/`: the base-model catalogue, fine-tuned models, and starting exports, pushes and imports."""

    def base(self) -> Rows:
        """The base models you may train on (the embedded default first among the shared ones)."""
        return list(self.client.paginate("/api/models/base/"))

    def list(self, *, latest: bool = False) -> Rows:
        return list(self.client.paginate("/api/models/", latest=1 if latest else None))

    def get(self, model_id: int) -> JSON:
        return dict(self.client.get(f"/api/models/{model_id}/"))

    def export(self, model_id: int, format: str = "adapter", quantization: str | None = None) -> JSON:
        """Start an export (`adapter`, `merged` or `gguf` with a quantization the server accepts); returns the export
        row (an identical finished or running export is returned instead of a new one)."""
        body: JSON = {"format": format}
        if quantization:
            body["quantization"] = quantization
        return dict(self.client.post(f"/api/models/{model_id}/export/", body))

    def exports(self, model_id: int) -> Rows:
        return list(self.client.paginate(f"/api/models/{model_id}/exports/"))

    def push_hub(self, model_id: int, repo_name: str, *, private: bool = True) -> JSON:
        """Start a push to the Hugging Face Hub (with the token saved in your profile); returns the push row."""
        return dict(
            self.client.post(f"/api/models/{model_id}/push-hub/", {"repo_name": repo_name, "private": private})
        )

    def pushes(self, model_id: int) -> Rows:
        return list(self.client.paginate(f"/api/models/{model_id}/pushes/"))

    def ollama_import(self, model_id: int, name: str, *, quantization: str | None = None) -> JSON:
        """Start an import into the deployment's Ollama server (its GGUF in ``quantization``, e.g. "Q4_K_M";
        default: the server's setting); returns the import row."""
        body = {"name": name, **({"quantization": quantization} if quantization else {})}
        return dict(self.client.post(f"/api/models/{model_id}/ollama-import/", body))


class _TaskResource(_Resource):
    """A background task's rows (`path`/<id>/): read one, or poll it until it ends (`kind` names it in errors)."""

    path = ""
    kind = ""

    def get(self, task_id: int) -> JSON:
        return dict(self.client.get(f"{self.path}{task_id}/"))

    def wait(
        self,
        task_id: int,
        *,
        timeout: float | None = None,
        interval: float = 1.0,
        on_update: Callable[[JSON], None] | None = None,
    ) -> JSON:
        """Poll until the task succeeded (returned) or failed (TaskFailed)."""
        return _wait_task(self.kind, lambda: self.get(task_id), timeout, interval, on_update)


class Exports(_TaskResource):
    """`/api/models/exports/<id>/`: status and verified download."""

    path, kind = "/api/models/exports/", "export"

    def link(self, export_id: int) -> JSON:
        """A short-lived signed download link: `{url, expires_in, file_name, size_bytes, sha256}`."""
        return dict(self.client.get(f"/api/models/exports/{export_id}/download/"))

    def download(self, export_id: int, dest: PathLike = ".", *, progress: Progress | None = None) -> Path:
        """Download a finished export into `dest` (a folder, or a file path) and check its SHA-256; returns the
        path. The signed link is fetched without the token (it may redirect to a bucket)."""
        link = self.link(export_id)
        target = Path(dest)
        if target.is_dir() or str(dest).endswith(("/", os.sep)):
            target = target / str(link["file_name"])
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        with (
            httpx2.Client(timeout=self.client.http.timeout, follow_redirects=True) as plain,
            plain.stream("GET", str(link["url"])) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise _api_error(response)
            total = int(response.headers.get("Content-Length") or link.get("size_bytes") or 0)
            done = 0
            with open(partial, "wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        expected = str(link.get("sha256") or "")
        if expected and digest.hexdigest() != expected:
            partial.unlink(missing_ok=True)
            raise ApiError(
                502,
                f"the download of export {export_id} is damaged: SHA-256 {digest.hexdigest()}, expected {expected}",
            )
        partial.replace(target)
        return target


class Pushes(_TaskResource):
    """`/api/models/push-hub/<id>/`: Hub push status and retry."""

    path, kind = "/api/models/push-hub/", "push"

    def retry(self, push_id: int) -> JSON:
        return dict(self.client.post(f"/api/models/push-hub/{push_id}/retry/"))


class OllamaImports(_TaskResource):
    """`/api/models/ollama-imports/<id>/`: Ollama import status (the Modelfile, verification, `run_command`)."""

    path, kind = "/api/models/ollama-imports/", "ollama-import"


# --- helpers -------------------------------------------------------------------------------------------------------


def _poll(
    fetch: Callable[[], JSON],
    done: frozenset[str],
    timeout: float | None,
    interval: float,
    on_update: Callable[[JSON], None] | None,
    what: str,
) -> JSON:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        row = fetch()
        if on_update is not None:
            on_update(row)
        if row.get("status") in done:
            return row
        if deadline is not None and time.monotonic() > deadline:
            raise WaitTimeout(f"{what} is still {row.get('status')} after {timeout:g} s")
        time.sleep(interval)


def _wait_task(
    kind: str,
    fetch: Callable[[], JSON],
    timeout: float | None,
    interval: float,
    on_update: Callable[[JSON], None] | None,
) -> JSON:
    row = _poll(fetch, TASK_FINISHED, timeout, interval, on_update, kind)
    if row["status"] != "succeeded":
        raise TaskFailed(kind, row)
    return row


def _retry_after(response: httpx2.Response) -> float:
    try:
        return max(0.5, float(response.headers.get("Retry-After") or 1))
    except ValueError:
        return 1.0


def _api_error(response: httpx2.Response) -> ApiError:
    """The API's `{"detail", "errors"}` body as an ApiError (AuthError for 401/403)."""
    detail = ""
    errors: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = str(body.get("detail") or "")
        found = body.get("errors")
        errors = found if isinstance(found, dict) else {}
    if not detail:
        text = response.text.strip() if response.headers.get("Content-Type", "").startswith("text/plain") else ""
        detail = text[:300] or response.reason_phrase or "error"
    cls = AuthError if response.status_code in (401, 403) else ApiError
    request = response.request
    return cls(response.status_code, detail, errors, method=request.method, url=str(request.url))


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value)


class _Multipart:
    """A multipart/form-data body streamed from the files (never read whole into memory), with its exact length
    known up front, so the server can refuse an oversized upload before reading it."""

    def __init__(self, fields: Mapping[str, str], paths: Sequence[Path], progress: Progress | None) -> None:
        self.boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self.fields = fields
        self.paths = paths
        self.progress = progress
        self.sizes = [p.stat().st_size for p in paths]
        self.total = sum(self.sizes)
        self.length = (
            sum(len(self._field(k, v)) for k, v in fields.items())
            + sum(len(self._file_head(p)) + size + 2 for p, size in zip(paths, self.sizes, strict=True))
            + len(self._tail())
        )

    def _field(self, name: str, value: str) -> bytes:
        return (f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()

    def _file_head(self, path: Path) -> bytes:
        filename = path.name.replace('"', "%22").replace("\r", "").replace("\n", "")
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()

    def _tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def __iter__(self) -> Iterator[bytes]:
        for name, value in self.fields.items():
            yield self._field(name, value)
        sent = 0
        if self.progress is not None:
            self.progress(0, self.total)
        for path in self.paths:
            yield self._file_head(path)
            with open(path, "rb") as f:
                yield from self._chunks(f, sent)
            sent += path.stat().st_size
            yield b"\r\n"
        yield self._tail()

    def _chunks(self, f: BinaryIO, sent: int) -> Iterator[bytes]:
        while chunk := f.read(CHUNK):
            sent += len(chunk)
            yield chunk
            if self.progress is not None:
                self.progress(sent, self.total)
