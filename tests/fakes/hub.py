"""A local fake of the Hugging Face Hub speaking its real HTTP protocol, so the production `huggingface_hub` client
code runs unchanged against it (HfApi(endpoint=<fake url>)).

Covered (see README, "Test fakes: Hugging Face Hub"):
- `GET /api/whoami-v2` (token roles read/write/fineGrained, organisations)
- `GET /api/models` (search, pipeline_tag, filter, sort, limit, expand; cursor pagination with a `Link` header)
- `GET /api/models/<repo>` and `/api/models/<repo>/revision/<rev>` (siblings with `?blobs=true`, safetensors parameter
  counts read from the real file headers, cardData parsed from README.md, config with tokenizer_config, gated, sha)
- `GET /api/models/<repo>/tree/<rev>[/<path>]` (what `snapshot_download` lists; no `xetHash`, so downloads use HTTP)
- `HEAD|GET /<repo>/resolve/<rev>/<file>` (ETag, X-Repo-Commit, Content-Length, X-Linked-Etag/-Size for LFS files,
  Range requests; EntryNotFound / RevisionNotFound / GatedRepo / RepoNotFound error codes; optional throttling)
- `POST /api/repos/create` (namespace = the user or one of their orgs; 409 with the repo url when it exists)
- `POST /api/validate-yaml` (README.md front matter checked with a real YAML parser)
- `POST /api/models/<repo>/preupload/<rev>` (regular below `lfs_threshold`, else lfs; remote oids so unchanged files
  are skipped by the client)
- `POST /<repo>.git/info/lfs/objects/batch`, `PUT /__lfs/<oid>`, `POST /__lfs/<oid>/verify` (basic LFS transfer)
- `POST /api/models/<repo>/commit/<rev>` (NDJSON: header, file, lfsFile, deletedFile, deletedFolder); each commit
  gets a new oid and the repo's files land on disk under `<root>/<namespace>/<name>/`.

Xet is not spoken: nothing advertises it (no `xetHash`, no `X-Xet-*` headers), so downloads use plain HTTP and small
files upload as "regular" commit content. An "lfs" upload through a client with `hf_xet` installed asks
`GET /api/models/<repo>/xet-write-token/<rev>` for a Xet write token: the fake checks the token and write access like
the Hub (401, 403 for a read-only token, 404 for an unknown repo), then refuses, 404 by default ("does not speak Xet")
or with what `refuse_xet_token(status, message)` set; tests that exercise LFS set `HF_UPLOAD_PROTOCOL = "lfs"`.

Failure injection: `fail(pattern, status, method=None, times=None, retry_after=None)` answers requests whose path
matches the regex with that status (0 = drop the connection); `fail_with` (any request) is kept for older tests;
`refuse_xet_token(status)` makes the Xet token endpoints answer that status (e.g. 403, the Hub refusing Xet writes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import struct
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_POINTER_SIZE = 134


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob (what the Hub reports for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class FakeFile:
    path: str
    size: int
    sha256: str
    git_oid: str
    lfs: bool


@dataclass
class FakeCommit:
    oid: str
    summary: str
    description: str
    files: dict[str, FakeFile]
    changed: list[str]
    author: str
    date: str


@dataclass
class FakeRepo:
    repo_id: str
    private: bool = False
    gated: bool | str = False
    gated_allowed: set[str] = field(default_factory=set)
    downloads: int = 0
    likes: int = 0
    pipeline_tag: str | None = "text-generation"
    library_name: str | None = "transformers"
    tags: list[str] = field(default_factory=list)
    created: str = field(default_factory=_now)
    commits: list[FakeCommit] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    @property
    def head(self) -> FakeCommit:
        return self.commits[-1]


@dataclass
class FailureRule:
    pattern: re.Pattern[str]
    status: int
    method: str | None
    times: int | None
    retry_after: int | None
    message: str


class _Reply(Exception):
    """Raised inside a handler to answer with a JSON error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = body


class FakeHub:
    """An in-process HTTP server answering like huggingface.co for the calls `huggingface_hub` makes."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.tokens: dict[str, str] = {}  # token -> user name
        self.token_roles: dict[str, str] = {}  # token -> "read" | "write" | "fineGrained" (default write)
        self.orgs: dict[str, list[str]] = {}  # user name -> organisations
        self.requests: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self.failures: list[FailureRule] = []
        self.repos: dict[str, FakeRepo] = {}
        self.lfs_threshold = 10 * 1024 * 1024  # the real Hub refuses regular files over 10 MB
        self.throttle_bytes_per_s: int | None = None
        self.xet_token_refusal: tuple[int, str] | None = None  # set by refuse_xet_token()
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="fake-hub-"))
        self._blobs = self.root / ".blobs"
        self._lfs_pending: dict[str, int] = {}  # oid -> size announced in a batch request
        self._lock = threading.RLock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                hub._handle(self, "GET")

            def do_HEAD(self) -> None:  # noqa: N802
                hub._handle(self, "HEAD")

            def do_POST(self) -> None:  # noqa: N802
                hub._handle(self, "POST")

            def do_PUT(self) -> None:  # noqa: N802
                hub._handle(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def reset(self) -> None:
        """Forget repos, failures, roles, orgs and logged requests (tokens are set by the fixture)."""
        with self._lock:
            self.requests.clear()
            self.fail_with = None
            self.failures.clear()
            self.repos.clear()
            self.token_roles.clear()
            self.orgs.clear()
            self._lfs_pending.clear()
            self.lfs_threshold = 10 * 1024 * 1024
            self.throttle_bytes_per_s = None
            self.xet_token_refusal = None
            for child in self.root.iterdir():
                shutil.rmtree(child, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------ test helpers
    def fail(
        self,
        pattern: str,
        status: int,
        *,
        method: str | None = None,
        times: int | None = None,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> None:
        """Answer requests whose path matches `pattern` (regex) with `status` (0 drops the connection)."""
        self.failures.append(
            FailureRule(
                re.compile(pattern), status, method, times, retry_after, message or f"Injected failure (HTTP {status})"
            )
        )

    def refuse_xet_token(self, status: int = 403, message: str | None = None) -> None:
        """Answer the Xet token endpoints (`xet-write-token`, `xet-read-token`) of a readable repo, for a token that
        may write, with `status` (a 4xx: the Hub refusing Xet, as a real one may for a token, repo or deployment)."""
        self.xet_token_refusal = (status, message or f"Xet storage access refused (HTTP {status})")

    def clear_failures(self) -> None:
        self.failures.clear()
        self.fail_with = None
        self.xet_token_refusal = None

    def add_model(
        self, repo_id: str, files: dict[str, bytes | str | Path], *, author: str | None = None, **meta: Any
    ) -> FakeRepo:
        """Create a model repo with one commit holding `files` (bytes, text, or a local file path)."""
        with self._lock:
            repo = FakeRepo(repo_id=repo_id, **meta)
            self.repos[repo_id] = repo
            entries: dict[str, FakeFile] = {}
            for path, content in files.items():
                data = (
                    Path(content).read_bytes()
                    if isinstance(content, Path)
                    else (content.encode() if isinstance(content, str) else content)
                )
                entries[path] = self._store(
                    path, data, lfs=len(data) >= self.lfs_threshold or path.endswith((".safetensors", ".bin", ".gguf"))
                )
            self._commit(repo, entries, list(entries), "Initial commit", "", author or repo.namespace)
            return repo

    def repo_dir(self, repo_id: str) -> Path:
        """Where the repo's files (at its head) are on disk."""
        return self.root / repo_id

    def commits(self, repo_id: str) -> list[FakeCommit]:
        return list(self.repos[repo_id].commits)

    # ------------------------------------------------------------------------------------------------ storage
    def _store(self, path: str, data: bytes, *, lfs: bool) -> FakeFile:
        sha = hashlib.sha256(data).hexdigest()
        self._blobs.mkdir(parents=True, exist_ok=True)
        blob = self._blobs / sha
        if not blob.exists():
            blob.write_bytes(data)
        return FakeFile(path=path, size=len(data), sha256=sha, git_oid=git_blob_oid(data), lfs=lfs)

    def _read(self, f: FakeFile) -> bytes:
        return (self._blobs / f.sha256).read_bytes()

    def _commit(
        self,
        repo: FakeRepo,
        files: dict[str, FakeFile],
        changed: list[str],
        summary: str,
        description: str,
        author: str,
    ) -> FakeCommit:
        oid = hashlib.sha1(f"{repo.repo_id}:{uuid.uuid4()}".encode()).hexdigest()
        commit = FakeCommit(
            oid=oid,
            summary=summary,
            description=description,
            files=dict(files),
            changed=changed,
            author=author,
            date=_now(),
        )
        repo.commits.append(commit)
        target = self.repo_dir(repo.repo_id)
        if target.exists():
            shutil.rmtree(target)
        for f in files.values():
            dest = target / f.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._blobs / f.sha256, dest)
        target.mkdir(parents=True, exist_ok=True)
        return commit

    # ------------------------------------------------------------------------------------------------ HTTP plumbing
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        query = {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        auth = h.headers.get("Authorization", "")
        body = self._read_body(h) if method in ("POST", "PUT") else b""
        self.requests.append({"method": method, "path": h.path, "authorization": auth})
        try:
            if self.fail_with:
                raise _Reply(self.fail_with, "Internal Error")
            self._inject_failure(method, path)
            token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
            self._route(h, method, path, query, token, body)
        except _Reply as reply:
            if reply.status == 0:
                h.close_connection = True
                try:
                    h.connection.shutdown(2)
                except OSError:
                    pass
                return
            headers = dict(reply.headers)
            if reply.code:
                headers["X-Error-Code"] = reply.code
            headers.setdefault("X-Error-Message", reply.message)
            self._json(h, reply.status, reply.body or {"error": reply.message}, headers, head=method == "HEAD")
        except Exception as exc:  # a bug in the fake: answer 500 so the test sees it
            self._json(h, 500, {"error": f"fake hub error: {type(exc).__name__}: {exc}"}, head=method == "HEAD")
            raise

    def _inject_failure(self, method: str, path: str) -> None:
        with self._lock:
            for rule in self.failures:
                if rule.method and rule.method != method:
                    continue
                if not rule.pattern.search(path):
                    continue
                if rule.times is not None:
                    if rule.times <= 0:
                        continue
                    rule.times -= 1
                headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
                raise _Reply(rule.status, rule.message, headers=headers)

    @staticmethod
    def _read_body(h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    h.rfile.readline()
                    return bytes(out)
                out += h.rfile.read(size)
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    @staticmethod
    def _json(
        h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None, *, head: bool = False
    ) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(data)

    # ------------------------------------------------------------------------------------------------ auth
    def _user(self, token: str, *, required: bool = False) -> str | None:
        if not token:
            if required:
                raise _Reply(401, "Invalid credentials in Authorization header")
            return None
        name = self.tokens.get(token)
        if name is None:
            raise _Reply(401, "Invalid credentials in Authorization header")
        return name

    def _can_write(self, token: str, namespace: str) -> str:
        user = self._user(token, required=True)
        assert user is not None
        if self.token_roles.get(token, "write") == "read":
            raise _Reply(
                403,
                f'You don\'t have the rights to write to the namespace "{namespace}": this access '
                "token is read-only. Use a token with write access.",
            )
        if namespace != user and namespace not in self.orgs.get(user, []):
            raise _Reply(403, f'You don\'t have the rights to create a model under the namespace "{namespace}"')
        return user

    def _can_read(self, repo: FakeRepo, token: str) -> str | None:
        user = self._user(token)
        member = user is not None and (user == repo.namespace or repo.namespace in self.orgs.get(user, []))
        if repo.private and not member:
            raise _Reply(404, "Repository not found", code="RepoNotFound")
        return user

    def _repo(self, repo_id: str, token: str) -> FakeRepo:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._user(token)  # an invalid token is reported as such first
            raise _Reply(404, "Repository not found", code="RepoNotFound")
        self._can_read(repo, token)
        return repo

    @staticmethod
    def _revision(repo: FakeRepo, rev: str) -> FakeCommit:
        if rev in ("main", "HEAD"):
            return repo.head
        for commit in repo.commits:
            if commit.oid == rev:
                return commit
        raise _Reply(404, f"Invalid rev id: {rev}", code="RevisionNotFound")

    # ------------------------------------------------------------------------------------------------ routing
    def _route(
        self, h: BaseHTTPRequestHandler, method: str, path: str, query: dict[str, list[str]], token: str, body: bytes
    ) -> None:
        if path == "/api/whoami-v2" and method == "GET":
            return self._json(h, 200, self._whoami(token))
        if path == "/api/models" and method == "GET":
            return self._list_models(h, query, token)
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(h, json.loads(body or b"{}"), token)
        if path == "/api/validate-yaml" and method == "POST":
            return self._validate_yaml(h, json.loads(body or b"{}"))
        if path.startswith("/api/models/"):
            segs = path[len("/api/models/") :].strip("/").split("/")
            if len(segs) < 2:
                raise _Reply(404, "Repository not found", code="RepoNotFound")
            repo_id, rest = "/".join(segs[:2]), segs[2:]
            if not rest and method == "GET":
                return self._model_info(h, repo_id, "main", query, token)
            if rest[:1] == ["revision"] and len(rest) >= 2 and method == "GET":
                return self._model_info(h, repo_id, "/".join(rest[1:]), query, token)
            if rest[:1] == ["tree"] and len(rest) >= 2 and method == "GET":
                return self._tree(h, repo_id, rest[1], "/".join(rest[2:]), token)
            if rest[:1] == ["preupload"] and method == "POST":
                return self._preupload(h, repo_id, json.loads(body or b"{}"), token)
            if rest[:1] == ["commit"] and method == "POST":
                return self._commit_api(h, repo_id, body, token)
            if rest[:1] in (["xet-write-token"], ["xet-read-token"]) and method == "GET":
                return self._xet_token(repo_id, rest[0], token)
        if path.startswith("/__lfs/"):
            return self._lfs_object(h, method, path[len("/__lfs/") :], body)
        match = re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if match and method == "POST":
            return self._lfs_batch(h, match.group(1), json.loads(body or b"{}"), token)
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if match and method in ("GET", "HEAD"):
            return self._resolve(h, method, match.group(1), match.group(2), match.group(3), token)
        raise _Reply(404, "Not found")

    # ------------------------------------------------------------------------------------------------ endpoints
    def _whoami(self, token: str) -> dict[str, Any]:
        name = self._user(token, required=True)
        assert name is not None
        role = self.token_roles.get(token, "write")
        return {
            "type": "user",
            "id": hashlib.md5(name.encode()).hexdigest()[:24],
            "name": name,
            "fullname": name.title(),
            "email": f"{name}@example.com",
            "emailVerified": True,
            "isPro": False,
            "orgs": [
                {"type": "org", "name": o, "fullname": o.title(), "roleInOrg": "write"}
                for o in self.orgs.get(name, [])
            ],
            "auth": {"type": "access_token", "accessToken": {"displayName": "ci", "role": role}},
        }

    def _summary(self, repo: FakeRepo) -> dict[str, Any]:
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.namespace,
            "likes": repo.likes,
            "downloads": repo.downloads,
            "trendingScore": 0,
            "private": repo.private,
            "gated": repo.gated,
            "pipeline_tag": repo.pipeline_tag,
            "library_name": repo.library_name,
            "tags": list(repo.tags),
            "createdAt": repo.created,
            "lastModified": repo.head.date,
            "sha": repo.head.oid,
        }

    def _list_models(self, h: BaseHTTPRequestHandler, query: dict[str, list[str]], token: str) -> None:
        user = self._user(token)
        search = (query.get("search") or [""])[0].lower()
        pipeline = (query.get("pipeline_tag") or [""])[0]
        filters = query.get("filter") or []
        items = []
        for repo in self.repos.values():
            if repo.private and repo.namespace != user and repo.namespace not in self.orgs.get(user or "", []):
                continue
            if search and search not in repo.repo_id.lower():
                continue
            if pipeline and repo.pipeline_tag != pipeline:
                continue
            if any(f not in repo.tags and f != repo.library_name and f != repo.pipeline_tag for f in filters):
                continue
            items.append(self._summary(repo))
        sort = (query.get("sort") or [""])[0]
        if sort in ("downloads", "likes", "trendingScore"):
            items.sort(key=lambda m: m[sort], reverse=(query.get("direction") or ["-1"])[0] != "1")
        expand = query.get("expand") or query.get("expand[]") or []
        if expand:
            items = [{"_id": m["_id"], "id": m["id"], **{k: m[k] for k in expand if k in m}} for m in items]
        start = int((query.get("cursor") or ["0"])[0])
        limit = int((query.get("limit") or ["1000"])[0])
        page = items[start : start + limit]
        headers = {}
        if start + limit < len(items):
            rest = "&".join(f"{k}={v}" for k, vs in query.items() if k != "cursor" for v in vs)
            headers["Link"] = f'<{self.url}/api/models?{rest}&cursor={start + limit}>; rel="next"'
        self._json(h, 200, page, headers)

    def _readme_meta(self, commit: FakeCommit) -> dict[str, Any] | None:
        readme = commit.files.get("README.md")
        if readme is None:
            return None
        text = self._read(readme).decode("utf-8", "replace")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.S)
        if not match:
            return None
        try:
            data = yaml.safe_load(match.group(1))
        except yaml.YAMLError:
            return None
        return data if isinstance(data, dict) else None

    def _json_file(self, commit: FakeCommit, name: str) -> dict[str, Any]:
        f = commit.files.get(name)
        if f is None:
            return {}
        try:
            data = json.loads(self._read(f))
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _safetensors_params(self, commit: FakeCommit) -> dict[str, Any] | None:
        by_dtype: dict[str, int] = {}
        for f in commit.files.values():
            if not f.path.endswith(".safetensors"):
                continue
            raw = self._read(f)
            (n,) = struct.unpack("<Q", raw[:8])
            header = json.loads(raw[8 : 8 + n])
            for name, tensor in header.items():
                if name == "__metadata__":
                    continue
                count = 1
                for dim in tensor["shape"]:
                    count *= int(dim)
                by_dtype[tensor["dtype"]] = by_dtype.get(tensor["dtype"], 0) + count
        if not by_dtype:
            return None
        return {"parameters": by_dtype, "total": sum(by_dtype.values())}

    def _model_info(
        self, h: BaseHTTPRequestHandler, repo_id: str, rev: str, query: dict[str, list[str]], token: str
    ) -> None:
        repo = self._repo(repo_id, token)
        commit = self._revision(repo, rev)
        blobs = (query.get("blobs") or ["false"])[0].lower() in ("1", "true")
        siblings = []
        for f in sorted(commit.files.values(), key=lambda x: x.path):
            entry: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                entry.update({"size": f.size, "blobId": f.git_oid})
                if f.lfs:
                    entry["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": LFS_POINTER_SIZE}
            siblings.append(entry)
        config = self._json_file(commit, "config.json")
        tok = self._json_file(commit, "tokenizer_config.json")
        info = {
            **self._summary(repo),
            "sha": commit.oid,
            "lastModified": commit.date,
            "disabled": False,
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(f.size for f in commit.files.values()),
            "cardData": self._readme_meta(commit),
        }
        if config:
            info["config"] = {k: config[k] for k in ("architectures", "model_type") if k in config}
            if tok:
                info["config"]["tokenizer_config"] = {
                    k: tok[k] for k in ("bos_token", "eos_token", "pad_token", "chat_template") if k in tok
                }
        st = self._safetensors_params(commit)
        if st:
            info["safetensors"] = st
        self._json(h, 200, info)

    def _tree(self, h: BaseHTTPRequestHandler, repo_id: str, rev: str, prefix: str, token: str) -> None:
        repo = self._repo(repo_id, token)
        commit = self._revision(repo, rev)
        out = []
        for f in sorted(commit.files.values(), key=lambda x: x.path):
            if prefix and not f.path.startswith(prefix.rstrip("/") + "/"):
                continue
            entry: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": LFS_POINTER_SIZE}
            out.append(entry)
        self._json(h, 200, out)

    def _resolve(
        self, h: BaseHTTPRequestHandler, method: str, repo_id: str, rev: str, filename: str, token: str
    ) -> None:
        repo = self._repo(repo_id, token)
        commit = self._revision(repo, unquote(rev))
        user = self._user(token)
        if repo.gated and user not in repo.gated_allowed and user != repo.namespace:
            raise _Reply(
                403,
                f"Access to model {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
                code="GatedRepo",
                headers={"X-Repo-Commit": commit.oid},
            )
        f = commit.files.get(filename)
        if f is None:
            raise _Reply(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        data = self._read(f) if method == "GET" else b""
        start = 0
        rng = h.headers.get("Range", "")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
        status = 200
        if match and method == "GET":
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else f.size - 1
            data = data[start : end + 1]
            status = 206
        etag = f.sha256 if f.lfs else f.git_oid
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data) if method == "GET" else f.size))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("ETag", f'"{etag}"')
        h.send_header("X-Repo-Commit", commit.oid)
        if f.lfs:
            h.send_header("X-Linked-Etag", f'"{etag}"')
            h.send_header("X-Linked-Size", str(f.size))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{f.size}")
        h.end_headers()
        if method == "HEAD":
            return
        chunk = 64 * 1024
        for i in range(0, len(data), chunk):
            h.wfile.write(data[i : i + chunk])
            if self.throttle_bytes_per_s:
                time.sleep(chunk / self.throttle_bytes_per_s)

    def _create_repo(self, h: BaseHTTPRequestHandler, payload: dict[str, Any], token: str) -> None:
        name = str(payload.get("name") or "")
        namespace = payload.get("organization") or self._user(token, required=True)
        if payload.get("type", "model") not in (None, "model"):
            raise _Reply(400, "Only model repos are supported by this fake")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name):
            raise _Reply(400, f"Invalid repo name {name!r}")
        self._can_write(token, str(namespace))
        repo_id = f"{namespace}/{name}"
        url = f"{self.url}/{repo_id}"
        with self._lock:
            if repo_id in self.repos:
                raise _Reply(
                    409,
                    "You already created this model repo",
                    body={"error": "You already created this model repo", "url": url},
                )
            private = payload.get("private")
            if "visibility" in payload:
                private = payload["visibility"] == "private"
            repo = FakeRepo(repo_id=repo_id, private=bool(private), downloads=0, pipeline_tag=None)
            self.repos[repo_id] = repo
            gitattributes = (
                b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.gguf filter=lfs diff=lfs merge=lfs -text\n"
            )
            self._commit(
                repo,
                {".gitattributes": self._store(".gitattributes", gitattributes, lfs=False)},
                [".gitattributes"],
                "initial commit",
                "",
                str(namespace),
            )
        self._json(h, 200, {"url": url, "name": repo_id, "id": hashlib.md5(repo_id.encode()).hexdigest()[:24]})

    def _validate_yaml(self, h: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        content = str(payload.get("content") or "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        errors: list[dict[str, str]] = []
        warnings: list[dict[str, str]] = []
        if not match:
            warnings.append({"message": "empty or missing yaml metadata in repo card"})
        else:
            try:
                meta = yaml.safe_load(match.group(1))
                if not isinstance(meta, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        self._json(h, 400 if errors else 200, {"errors": errors, "warnings": warnings})

    def _preupload(self, h: BaseHTTPRequestHandler, repo_id: str, payload: dict[str, Any], token: str) -> None:
        repo = self._repo(repo_id, token)
        self._can_write(token, repo.namespace)
        head = repo.head.files
        out = []
        for item in payload.get("files") or []:
            path, size = str(item["path"]), int(item.get("size") or 0)
            lfs = size >= self.lfs_threshold
            existing = head.get(path)
            oid = None
            if existing is not None and existing.lfs == lfs:
                oid = existing.sha256 if lfs else existing.git_oid
            out.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json(h, 200, {"files": out, "commitOid": repo.head.oid})

    def _xet_token(self, repo_id: str, endpoint: str, token: str) -> None:
        """Checked like the Hub (token, repo, write access), then refused: this fake has no Xet storage to hand out."""
        repo = self._repo(repo_id, token)
        if endpoint == "xet-write-token":
            self._can_write(token, repo.namespace)
        if self.xet_token_refusal is not None:
            raise _Reply(*self.xet_token_refusal)
        raise _Reply(404, "This fake Hub does not speak Xet; set HF_UPLOAD_PROTOCOL=lfs for LFS uploads.")

    def _lfs_batch(self, h: BaseHTTPRequestHandler, repo_id: str, payload: dict[str, Any], token: str) -> None:
        repo = self._repo(repo_id, token)
        self._can_write(token, repo.namespace)
        objects = []
        for obj in payload.get("objects") or []:
            oid, size = str(obj["oid"]), int(obj["size"])
            if (self._blobs / oid).exists():
                objects.append({"oid": oid, "size": size})  # already stored: no actions
                continue
            self._lfs_pending[oid] = size
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{self.url}/__lfs/{oid}", "expires_in": 3600},
                        "verify": {"href": f"{self.url}/__lfs/{oid}/verify"},
                    },
                }
            )
        self._json(h, 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_object(self, h: BaseHTTPRequestHandler, method: str, rest: str, body: bytes) -> None:
        oid, _, action = rest.partition("/")
        if method == "PUT" and not action:
            if oid not in self._lfs_pending:
                raise _Reply(403, "No upload was announced for this object")
            if hashlib.sha256(body).hexdigest() != oid or len(body) != self._lfs_pending[oid]:
                raise _Reply(400, "Uploaded content does not match its oid/size")
            self._blobs.mkdir(parents=True, exist_ok=True)
            (self._blobs / oid).write_bytes(body)
            h.send_response(200)
            h.send_header("ETag", f'"{oid}"')
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if method == "POST" and action == "verify":
            if not (self._blobs / oid).exists():
                raise _Reply(404, "Object not uploaded")
            return self._json(h, 200, {"success": True})
        raise _Reply(404, "Not found")

    def _commit_api(self, h: BaseHTTPRequestHandler, repo_id: str, body: bytes, token: str) -> None:
        repo = self._repo(repo_id, token)
        user = self._can_write(token, repo.namespace)
        items = [json.loads(line) for line in body.split(b"\n") if line.strip()]
        if not items or items[0].get("key") != "header":
            raise _Reply(400, "The first line of the NDJSON payload must be the commit header")
        header = items[0]["value"]
        with self._lock:
            parent = header.get("parentCommit")
            if parent and parent != repo.head.oid:
                raise _Reply(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.head.files)
            changed = []
            for item in items[1:]:
                key, value = item.get("key"), item.get("value") or {}
                path = str(value.get("path", ""))
                if key == "file":
                    if value.get("encoding") != "base64":
                        raise _Reply(400, "Only base64 file content is supported")
                    files[path] = self._store(path, base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    oid = str(value["oid"])
                    blob = self._blobs / oid
                    if not blob.exists():
                        raise _Reply(422, f"LFS object {oid} for {path} was never uploaded")
                    size = blob.stat().st_size
                    files[path] = FakeFile(
                        path=path,
                        size=size,
                        sha256=oid,
                        git_oid=git_blob_oid(f"lfs pointer {oid} {size}".encode()),
                        lfs=True,
                    )
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise _Reply(404, "A file with this name doesn't exist", code="EntryNotFound")
                elif key == "deletedFolder":
                    for p in [p for p in files if p.startswith(path.rstrip("/") + "/")]:
                        files.pop(p)
                else:
                    raise _Reply(400, f"Unknown commit operation {key!r}")
                changed.append(path)
            commit = self._commit(
                repo, files, changed, str(header.get("summary") or ""), str(header.get("description") or ""), user
            )
        self._json(
            h,
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.url}/{repo_id}/commit/{commit.oid}",
                "hookOutput": "",
            },
        )


# --- a tiny repository to serve ---------------------------------------------------------------------------------
EMBEDDED_TOKENIZER = Path.home() / ".cache" / "finetune" / "models" / "SmolLM2-135M-Instruct"
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tiny_model_files(vocab: int = 64000, hidden: int = 96) -> tuple[dict[str, Any], int]:
    """A tiny llama-shaped repo (config, tokenizer + chat template, safetensors weights); returns (files, params).
    The default weights are ~25 MB: huggingface_hub writes downloads in 10 MB chunks, so progress shows in between."""
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    tensors = {"model.embed_tokens.weight": rng.standard_normal((vocab, hidden), dtype=np.float32)}
    for i in range(2):
        shapes = {
            "self_attn.q_proj.weight": (hidden, hidden),
            "self_attn.k_proj.weight": (hidden // 2, hidden),
            "self_attn.v_proj.weight": (hidden // 2, hidden),
            "self_attn.o_proj.weight": (hidden, hidden),
            "mlp.gate_proj.weight": (96, hidden),
            "mlp.up_proj.weight": (96, hidden),
            "mlp.down_proj.weight": (hidden, 96),
            "input_layernorm.weight": (hidden,),
        }
        for name, shape in shapes.items():
            tensors[f"model.layers.{i}.{name}"] = rng.standard_normal(shape, dtype=np.float32)
    params = sum(int(t.size) for t in tensors.values())
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": vocab,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
    }
    files = {
        "config.json": json.dumps(config),
        "tokenizer_config.json": json.dumps(
            {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": CHATML}
        ),
        "tokenizer.json": EMBEDDED_TOKENIZER / "tokenizer.json",
        "model.safetensors": save(tensors),
        "pytorch_model.bin": b"\x80\x02pickle that must never be downloaded",
        "README.md": "---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# tiny\n",
    }
    return files, params
