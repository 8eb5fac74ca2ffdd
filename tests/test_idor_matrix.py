"""The IDOR matrix: every HTTP route of the URL resolver and every websocket route, called with the ids of one user's
objects (in paths, query strings and bodies) by that owner, by a second user (session and API token) and anonymously.

The routes are enumerated, not listed by hand: `ROUTES` below says, for each URL pattern, what fills its path
parameters and what the second user may get back. A route the resolver serves with no entry in the table fails the
test (so does an entry whose route is gone), so a new endpoint cannot ship without deciding who may call it.

What is checked, per route x method:
- the second user (and anonymous) never gets a 2xx on another user's object, only what the table allows (404 by
  default: another user's id looks exactly like a missing one; the same request with an id that does not exist gets
  the same status and body), never a body naming the owner's objects, and none of the owner's rows is created,
  changed or deleted (nothing at all is created by a refused call);
- anonymous gets 401/403 wherever a user is needed;
- the owner's GET of an object route is not a 404 (the ids were right), and the owner's lists hold the owner's
  objects while the second user's lists hold none of them.
Every call runs in a savepoint that is rolled back: the owner's DELETE or PATCH does not change what the next call
sees, and nothing is trained, exported or downloaded (the checks stop at ownership).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import DatabaseError, transaction
from django.test import Client

from tests.processes import run_async
from tests.routes import http_routes, ws_routes

# --- what fills a route's path parameters ---------------------------------------------------------------------------
DATASET, JOB, MODEL, EXPORT, OLLAMA, PUSH, TOKEN = "dataset", "job", "model", "export", "ollama", "push", "token"
SWEEP = "sweep"
BASE, FILE = "base", "file"
# Owned by one user: nobody else may touch them.
OBJECT_KINDS = (DATASET, JOB, MODEL, EXPORT, OLLAMA, PUSH, TOKEN, SWEEP)
INTERNAL = "internal"  # api/internal/: a per-job signed callback token, never a user (session or API token)
SELF = "self"  # acts on the caller's own account only (no id anywhere): a 2xx is the caller's own data
NONE = "none"  # no object in the path (collections, create routes): the ids travel in the body or query string
PUBLIC = "public"  # open to anyone (sign-in, registration, CSRF cookie, health, the API schema and docs)
NOT_FOUND = "not-found"  # the API's catch-all: 404 for everyone
ADMIN = "admin"  # the staff-only admin site: non-staff users are sent to its sign-in page
REDIRECT = "redirect"  # a permanent bookmark redirect, the same for everyone
SHELL = "shell"  # the React app's HTML shell for client-side paths: the same page for everyone, no data
SCRAPER = "scraper"  # operators' Prometheus metrics: a scraper's token or an allowed address, never a user

KINDS = {
    DATASET: "one of the owner's datasets (any version)",
    JOB: "one of the owner's training jobs",
    SWEEP: "one of the owner's hyperparameter sweeps",
    MODEL: "one of the owner's fine-tuned models",
    EXPORT: "one of the owner's model exports",
    OLLAMA: "one of the owner's Ollama imports",
    PUSH: "one of the owner's Hub pushes",
    TOKEN: "one of the owner's API tokens",
    BASE: "a base model: a shared catalogue, public entries are visible to every signed-in user by design (private "
    "or gated Hub entries are issue 13 item 1, tested with that fix)",
    INTERNAL: "internal endpoints for remote runs: a per-job signed Bearer token; a session or an API token (the "
    "owner's included) gets 403, wrong methods 405",
    SELF: "the caller's own account, quotas, tokens, Hub token or dashboard: a 2xx shows the caller's data only",
    NONE: "no object in the path; lists show only the caller's rows, ids of another user's objects in the body or "
    "query string are refused (400/404) with nothing created",
    PUBLIC: "public: no user data in any answer",
    NOT_FOUND: "no such API route: 404 for everyone",
    ADMIN: "staff-only admin site: a non-staff user (owner or not) is redirected to the admin sign-in",
    REDIRECT: "bookmark redirect (no data)",
    SHELL: "the React app's shell (200, or 503 with an explanation when the build is missing): no data",
    SCRAPER: "Prometheus metrics: 403 for every user and anonymous caller (only METRICS_TOKEN or METRICS_ALLOWED_IPS)",
}

MISSING = 987654321  # an id no row has: another user's id must answer exactly like it
ALL_METHODS = ("get", "head", "options", "post", "put", "patch", "delete")
UNSAFE = ("post", "put", "patch", "delete")
ANON_REFUSED = (401, 403)
OPTIONS_OK = {"options": ((200,), "OPTIONS describes the endpoint (DRF metadata), never the object")}
VALID_CHAT = {"messages": [{"role": "user", "content": "hi"}]}
INVALID_CHAT = {"messages": []}  # refused by the request check: nothing is queued on the inference workers


@dataclass(frozen=True)
class Probe:
    """One more call on a route: `path` with {kind} placeholders, by `who`, expecting one of `expect`."""

    method: str
    path: str
    who: str
    expect: tuple[int, ...]
    why: str
    query: Callable[[World], dict[str, Any]] | None = None
    body: Callable[[World], Any] | None = None


@dataclass(frozen=True)
class Entry:
    """What a route's path parameters name, and what a second user may get there (beyond the kind's default)."""

    kind: str
    note: str = ""
    params: dict[str, str] = field(default_factory=dict)  # path parameter -> kind or "=literal" (default: `kind`)
    path: str | None = None  # for regex patterns: the URL to call, with {kind} placeholders
    methods: tuple[str, ...] | None = None  # when the resolver cannot tell (an include)
    query: Callable[[World], dict[str, Any]] | None = None
    body: Callable[[World], Any] | None = None  # for POST/PUT/PATCH: valid, so the ownership check is reached
    owner_body: Callable[[World], Any] | None = None  # the owner's body when the valid one would start real work
    other: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)  # method -> (statuses, why)
    listed: str | None = None  # a list route: the kind of the rows it returns
    probes: tuple[Probe, ...] = ()


def _job_body(w: World) -> dict[str, Any]:
    return {"name": "probe", "dataset": w.dataset.pk, "base_model": w.base.pk}


_REFUSED_IDS = {"post": ((400, 404), "the body names the owner's dataset: refused, nothing created")}
_NOT_SERVED_PUT = {"put": ((405,), "PUT is not served (http_method_names): 405 for every signed-in user")}
_BASE_GENERATE = {"post": ((400,), "shared catalogue; the chat body is invalid on purpose so nothing is queued")}

ROUTES: dict[str, Entry] = {
    # public
    "api/schema/": Entry(PUBLIC, "the OpenAPI schema"),
    "api/docs/": Entry(PUBLIC, "Swagger UI page"),
    "api/auth/csrf/": Entry(PUBLIC, "sets the CSRF cookie"),
    "api/auth/register/": Entry(PUBLIC, "self-service sign-up; an empty body (400) creates nothing"),
    "api/auth/login/": Entry(PUBLIC, "sign-in; an empty body (400)"),
    "api/auth/logout/": Entry(PUBLIC, "ends the caller's own session"),
    "api/health/": Entry(PUBLIC, "database/Redis/worker status"),
    # the caller's own account
    "api/auth/me/": Entry(SELF, body=lambda w: {}),
    "api/auth/me/quotas/": Entry(SELF),
    "api/auth/change-password/": Entry(SELF, "empty body: 400"),
    "api/auth/hf-token/": Entry(SELF, "GET shows the caller's last 4 characters only; empty POST: 400"),
    "api/auth/wandb-key/": Entry(SELF, "GET shows the caller's last 4 characters only; empty POST: 400"),
    "api/auth/tokens/": Entry(
        SELF,
        "lists/creates the caller's tokens; a `user` field naming the owner is ignored",
        listed=TOKEN,
        body=lambda w: {"name": "probe", "user": w.owner.pk},
    ),
    "api/auth/tokens/<pk>/": Entry(TOKEN, "revoke (DELETE only)"),
    "api/notifications/test/": Entry(SELF, "a test notification to the caller's own sockets"),
    "api/dashboard/stats/": Entry(SELF),
    "api/dashboard/analytics/": Entry(SELF, query=lambda w: {"days": 30}),
    "api/models/hub/search/": Entry(
        SELF, "Hub search with the caller's own Hub token (none here: 400)", query=lambda w: {"q": "smol"}
    ),
    "api/models/hub/info/": Entry(
        SELF,
        "Hub model info with the caller's own Hub token (none here: 400)",
        query=lambda w: {"repo_id": "someone/some-model"},
    ),
    "api/models/hub/download/": Entry(
        SELF,
        "adds a Hub repo to the shared catalogue with the caller's own token (none here: 400)",
        body=lambda w: {"repo_id": "someone/some-model"},
    ),
    # datasets
    "api/datasets/": Entry(
        NONE,
        "upload (a JSON body without files: 400)",
        listed=DATASET,
        query=lambda w: {"search": w.dataset.name},
        body=lambda w: {"name": "probe", "dataset": w.dataset.pk},
        other={"post": ((400,), "no file uploaded; the owner's dataset id in the body is ignored")},
    ),
    "api/datasets/<pk>/": Entry(DATASET, body=lambda w: {"name": "taken-over"}),
    "api/datasets/<pk>/download/": Entry(DATASET),
    "api/datasets/<pk>/preprocess/": Entry(DATASET, body=lambda w: {"steps": [{"op": "dedupe"}], "name": "taken"}),
    "api/datasets/<pk>/preview/": Entry(DATASET, query=lambda w: {"base_model": w.base.pk, "limit": 2}),
    "api/datasets/<pk>/report/": Entry(DATASET),
    "api/datasets/<pk>/split/": Entry(DATASET, body=lambda w: {"validation_ratio": 0.25}),
    "api/datasets/<pk>/statistics/": Entry(DATASET),
    "api/datasets/<pk>/validate/": Entry(DATASET, body=lambda w: {"max_length": 128}),
    "api/datasets/<pk>/versions/": Entry(DATASET),
    # training
    "api/training/presets/": Entry(NONE, "static presets, the same for everyone"),
    "api/training/options/": Entry(NONE, "the wizard's choices (schedulers, GPU kinds), the same for everyone"),
    "api/training/notifications/test-webhook/": Entry(SELF, "sends to the caller's own saved webhook; no id in it"),
    "api/training/estimate/": Entry(NONE, "the body names a dataset", body=_job_body, other=_REFUSED_IDS),
    "api/training/jobs/": Entry(
        NONE,
        "the body names a dataset",
        listed=JOB,
        body=_job_body,
        other=_REFUSED_IDS,
        query=lambda w: {"status": "succeeded"},
    ),
    "api/training/jobs/<pk>/": Entry(JOB),
    "api/training/jobs/<pk>/cancel/": Entry(JOB),
    "api/training/jobs/<pk>/continue/": Entry(JOB, body=lambda w: {"extra_epochs": 1}),
    "api/training/jobs/<pk>/logs/": Entry(JOB, query=lambda w: {"after_seq": 0}),
    "api/training/jobs/<pk>/metrics/": Entry(JOB, query=lambda w: {"after_seq": 0}),
    "api/training/jobs/<pk>/resume/": Entry(JOB),
    "api/training/sweeps/": Entry(
        NONE,
        "the body names a dataset",
        listed=SWEEP,
        body=lambda w: {**_job_body(w), "parameters": {"learning_rate": [1e-4]}},
        other=_REFUSED_IDS,
    ),
    "api/training/sweeps/<pk>/": Entry(SWEEP),
    "api/training/sweeps/<pk>/cancel/": Entry(SWEEP),
    "api/training/sweeps/<pk>/promote/": Entry(SWEEP, body=lambda w: {"job": w.job.pk}),
    "api/training/jobs/<pk>/tensorboard/": Entry(JOB, "the job's TensorBoard events (409 when it has none)"),
    # models: registry, exports, Ollama, Hub pushes, playground
    "api/models/": Entry(
        NONE,
        "filters name/search/base_model",
        listed=MODEL,
        query=lambda w: {"name": w.model.name, "base_model": w.base.pk},
    ),
    "api/models/<pk>/": Entry(MODEL, body=lambda w: {"name": "taken-over"}, other=_NOT_SERVED_PUT),
    "api/models/<pk>/compare/": Entry(
        MODEL,
        "`?other=` is checked too",
        query=lambda w: {"other": w.model2.pk},
        probes=(
            Probe(
                "get",
                "/api/models/{other_model}/compare/",
                "other",
                (404,),
                "the second user's own model compared with the owner's (?other=): 404",
                query=lambda w: {"other": w.model.pk},
            ),
            Probe(
                "get",
                "/api/models/{model}/compare/",
                "owner",
                (200,),
                "the owner compares two own versions",
                query=lambda w: {"other": w.model2.pk},
            ),
        ),
    ),
    "api/models/<pk>/versions/": Entry(MODEL),
    "api/models/<pk>/export/": Entry(MODEL, body=lambda w: {"format": "adapter"}),
    "api/models/<pk>/exports/": Entry(MODEL, "the exports of one model"),
    "api/models/exports/<export_id>/": Entry(EXPORT),
    "api/models/exports/<export_id>/download/": Entry(
        EXPORT,
        "the owner gets a signed link; a signed link (?sig=) is a bearer capability for its own export only",
        probes=(
            Probe(
                "get",
                "/api/models/exports/{export}/download/",
                "other",
                (403,),
                "the second user's valid link for their own export, on the owner's export id",
                query=lambda w: {"sig": w.other_sig},
            ),
            Probe(
                "get",
                "/api/models/exports/{export}/download/",
                "anon",
                (403,),
                "same, anonymously",
                query=lambda w: {"sig": w.other_sig},
            ),
            Probe(
                "get",
                "/api/models/exports/{other_export}/download/",
                "anon",
                (403,),
                "the owner's link on another export id",
                query=lambda w: {"sig": w.owner_sig},
            ),
            Probe(
                "get",
                "/api/models/exports/{export}/download/",
                "anon",
                (403,),
                "a forged signature",
                query=lambda w: {"sig": f"{w.export.pk}.forged:AAAA"},
            ),
            Probe(
                "get",
                "/api/models/exports/{export}/download/",
                "anon",
                (200, 302),
                "by design: the owner's own signed link works without a session until it expires",
                query=lambda w: {"sig": w.owner_sig},
            ),
        ),
    ),
    "api/models/<pk>/ollama-import/": Entry(MODEL, body=lambda w: {"name": "taken-over"}),
    "api/models/<pk>/ollama-imports/": Entry(MODEL, "the Ollama imports of one model"),
    "api/models/ollama-imports/<import_id>/": Entry(OLLAMA),
    "api/models/<pk>/push-hub/": Entry(MODEL, body=lambda w: {"repo_name": "taken-over"}),
    "api/models/<pk>/pushes/": Entry(MODEL, "the Hub pushes of one model"),
    "api/models/push-hub/<pk>/": Entry(PUSH),
    "api/models/push-hub/<pk>/retry/": Entry(PUSH),
    "api/models/<pk>/generate/": Entry(
        MODEL, "playground, one full answer", body=lambda w: VALID_CHAT, owner_body=lambda w: INVALID_CHAT
    ),
    "api/models/base/": Entry(BASE, "the catalogue list"),
    "api/models/base/<pk>/": Entry(BASE),
    "api/models/base/<pk>/fit/": Entry(BASE, query=lambda w: {"method": "lora"}),
    "api/models/base/<pk>/generate/": Entry(BASE, body=lambda w: INVALID_CHAT, other=_BASE_GENERATE),
    # internal callbacks of remote runs
    "api/internal/jobs/<job_id>/events/": Entry(
        INTERNAL,
        params={"job_id": JOB},
        body=lambda w: {"events": []},
        probes=(
            Probe(
                "post",
                "/api/internal/jobs/{job}/events/",
                "bearer_other_job",
                (403,),
                "the second user's job's valid callback token on the owner's job",
                body=lambda w: {"events": []},
            ),
            Probe(
                "post",
                "/api/internal/jobs/{job}/events/",
                "bearer_forged",
                (403,),
                "a forged callback token",
                body=lambda w: {"events": []},
            ),
        ),
    ),
    "api/internal/jobs/<job_id>/events/artifact/": Entry(
        INTERNAL,
        params={"job_id": JOB},
        probes=(
            Probe(
                "post",
                "/api/internal/jobs/{job}/events/artifact/",
                "bearer_other_job",
                (403,),
                "the second user's job's callback token on the owner's job",
            ),
        ),
    ),
    "api/internal/jobs/<job_id>/files/<file_id>/": Entry(
        INTERNAL,
        params={"job_id": JOB, "file_id": FILE},
        probes=(
            Probe(
                "get",
                "/api/internal/jobs/{job}/files/{file}/",
                "bearer_other_job",
                (403,),
                "the second user's job's callback token on the owner's job",
            ),
            Probe(
                "get",
                "/api/internal/jobs/{other_job}/files/{file}/",
                "bearer_other_job",
                (404,),
                "the second user's job with its valid token, asking for the owner's dataset file",
            ),
            Probe(
                "get",
                "/api/internal/jobs/{job}/files/{file}/",
                "bearer_owner_job",
                (200,),
                "the owner's job's own callback token gets its dataset file: the 403s above are the token check",
            ),
        ),
    ),
    "api/internal/jobs/<job_id>/objects/<name>/": Entry(
        INTERNAL,
        params={"job_id": JOB, "name": "=base_model"},
        probes=(
            Probe(
                "get",
                "/api/internal/jobs/{job}/objects/base_model/",
                "bearer_other_job",
                (403,),
                "the second user's job's callback token on the owner's job",
            ),
        ),
    ),
    # outside the API
    "api/[\\s\\S]*": Entry(NOT_FOUND, path="/api/no-such-route/{dataset}/"),
    "admin/": Entry(
        ADMIN,
        "the whole admin site (one include); probed on the owner's job's change page",
        path="/admin/training/trainingjob/{job}/change/",
        methods=("get", "head", "post"),
    ),
    "admin/dashboard/auditlog/<rest>": Entry(REDIRECT, path="/admin/dashboard/auditlog/{job}/change/"),
    "metrics": Entry(SCRAPER, "platform and web metrics for Prometheus", path="/metrics", methods=("get",)),
    "(?!static/|media/|ws/).*": Entry(SHELL, path="/datasets/{dataset}"),
}


# --- the websocket routes ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WsProbe:
    path: str
    who: str
    accepted: bool
    why: str
    same_as: str | None = None  # a refused probe must close exactly like this path (an id that does not exist)


@dataclass(frozen=True)
class WsEntry:
    kind: str
    note: str
    probes: tuple[WsProbe, ...]


WS_ROUTES: dict[str, WsEntry] = {
    "ws/notifications/": WsEntry(
        SELF,
        "the caller's own group (no id in the path): hello names the caller",
        (
            WsProbe("/ws/notifications/", "anon", False, "anonymous: 4401"),
            WsProbe("/ws/notifications/", "other", True, "the second user's own group"),
            WsProbe("/ws/notifications/", "owner", True, "the owner's own group"),
        ),
    ),
    "ws/training/<job_id>/": WsEntry(
        JOB,
        "live metrics and logs of one job, its owner only",
        (
            WsProbe("/ws/training/{job}/", "other", False, "the owner's job", same_as="/ws/training/{missing}/"),
            WsProbe("/ws/training/{job}/", "anon", False, "anonymous"),
            WsProbe("/ws/training/{job}/", "owner", True, "the owner"),
        ),
    ),
    "ws/models/<target>/generate/": WsEntry(
        MODEL,
        "<model id>: its owner only; base-<id>: the shared catalogue",
        (
            WsProbe(
                "/ws/models/{model}/generate/",
                "other",
                False,
                "the owner's model",
                same_as="/ws/models/{missing}/generate/",
            ),
            WsProbe("/ws/models/{model}/generate/", "anon", False, "anonymous"),
            WsProbe("/ws/models/{model}/generate/", "owner", True, "the owner"),
            WsProbe("/ws/models/base-{base}/generate/", "other", True, "a base model: shared by design"),
            WsProbe("/ws/models/base-{base}/generate/", "anon", False, "anonymous, base model"),
        ),
    ),
}


# --- enumeration ---------------------------------------------------------------------------------------------------
def methods_of(callback: Any, entry: Entry) -> tuple[str, ...]:
    """DRF ViewSets: their action map; APIView/View classes: the handlers they define; plain functions (which may
    restrict methods in a decorator the resolver cannot see): every method."""
    if entry.methods:
        return entry.methods
    actions = getattr(callback, "actions", None)
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if actions:
        names = set(actions)
    elif cls is not None:
        names = {m for m in cls.http_method_names if hasattr(cls, m)}
    else:
        return ALL_METHODS
    if "get" in names:
        names.add("head")
    if cls is not None and hasattr(cls, "options"):
        names.add("options")
    return tuple(m for m in ALL_METHODS if m in names)


def table_problems() -> list[str]:
    served, ws = http_routes(), ws_routes()
    problems = [
        f"route {r!r} has no entry in ROUTES (tests/test_idor_matrix.py): say what fills its path "
        "parameters and who may call it"
        for r in served
        if r not in ROUTES
    ]
    problems += [f"ROUTES entry {r!r} matches no route any more" for r in ROUTES if r not in served]
    problems += [f"websocket route {r!r} has no entry in WS_ROUTES" for r in ws if r not in WS_ROUTES]
    problems += [f"WS_ROUTES entry {r!r} matches no websocket route any more" for r in WS_ROUTES if r not in ws]
    for route, entry in ROUTES.items():
        names = re.findall(r"<(\w+)>", route)
        if entry.kind not in KINDS:
            problems.append(f"ROUTES[{route!r}]: unknown kind {entry.kind!r}")
        if entry.path is None and (len(names) > 1 or re.search(r"[()*]", route)) and not entry.params:
            problems.append(f"ROUTES[{route!r}]: give `params` or `path`")
        if names and entry.path is None and entry.kind not in (*OBJECT_KINDS, BASE) and not entry.params:
            problems.append(f"ROUTES[{route!r}]: a {entry.kind} route with path parameters needs `params`")
    return problems


def test_every_route_has_an_entry() -> None:
    """A route added to the resolver or the websocket router without an entry here fails (and so does a stale one)."""
    problems = table_problems()
    assert not problems, "\n".join(problems)


# --- the world: one owner's objects, a second user's own objects -------------------------------------------------
@dataclass
class World:
    owner: Any
    other: Any
    base: Any
    dataset: Any
    file: Any
    job: Any
    sweep: Any
    model: Any
    model2: Any
    export: Any
    ollama: Any
    push: Any
    token: Any
    owner_key: str
    other_dataset: Any
    other_job: Any
    other_model: Any
    other_export: Any
    other_key: str
    owner_sig: str
    other_sig: str
    secrets: tuple[str, ...]

    def ids(self) -> dict[str, Any]:
        return {
            DATASET: self.dataset.pk,
            JOB: self.job.pk,
            SWEEP: self.sweep.pk,
            MODEL: self.model.pk,
            "model2": self.model2.pk,
            EXPORT: self.export.pk,
            OLLAMA: self.ollama.pk,
            PUSH: self.push.pk,
            TOKEN: self.token.pk,
            BASE: self.base.pk,
            FILE: self.file.pk,
            "other_dataset": self.other_dataset.pk,
            "other_job": self.other_job.pk,
            "other_model": self.other_model.pk,
            "other_export": self.other_export.pk,
            "missing": MISSING,
        }


def make_world() -> World:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from accounts import services as accounts
    from models_app import exports
    from models_app.models import HubPush, ModelExport, OllamaImport
    from tests.factories import (
        BaseModelFactory,
        DatasetFactory,
        FineTunedModelFactory,
        TrainingJobFactory,
        UserFactory,
        alpaca_rows,
    )
    from training.models import Sweep, TrainingJob

    owner = UserFactory(username="owner_s3cr3t_q7", email="owner_s3cr3t_q7@example.com")
    other = UserFactory(username="prober_x9")
    base = BaseModelFactory()
    dataset = DatasetFactory(owner=owner, name="owner-secret-dataset-q7")
    job = TrainingJobFactory(
        owner=owner, name="owner-secret-job-q7", dataset=dataset, base_model=base, status="succeeded"
    )
    model = FineTunedModelFactory(owner=owner, name="owner-secret-model-q7", base_model=base, job=job)
    sweep = Sweep.objects.create(owner=owner, name="owner-secret-sweep-q7", parameters={"learning_rate": [1e-4]})
    TrainingJob.objects.filter(pk=job.pk).update(sweep=sweep, sweep_params={"learning_rate": 1e-4})
    model2 = FineTunedModelFactory(owner=owner, name="owner-secret-model-q7", base_model=base)

    def export_of(m: Any, who: Any, sha: str) -> Any:
        key = default_storage.save(f"exports/idor-{who.username}.zip", ContentFile(b"PK\x05\x06" + b"\0" * 18))
        return ModelExport.objects.create(
            owner=who, model=m, format="adapter", status="succeeded", file_key=key, sha256=sha, size_bytes=22
        )

    export = export_of(model, owner, "5ec7e7" * 10 + "abcd")
    ollama = OllamaImport.objects.create(
        owner=owner, model=model, ollama_name="owner-secret-ollama-q7", host="http://127.0.0.1:11434", status="failed"
    )
    push = HubPush.objects.create(
        owner=owner, model=model, repo_id="owner-secret-hf/owner-secret-push-q7", status="failed", retryable=True
    )
    created = accounts.create_api_token(owner, name="owner-secret-token-q7")
    other_dataset = DatasetFactory(owner=other, name="prober dataset", rows=False)
    other_job = TrainingJobFactory(owner=other, name="prober job", dataset=other_dataset, base_model=base)
    other_model = FineTunedModelFactory(owner=other, name="prober-model", base_model=base)
    other_export = export_of(other_model, other, "0ddba11" * 9 + "f")
    other_key = accounts.create_api_token(other, name="prober token").key
    return World(
        owner=owner,
        other=other,
        base=base,
        dataset=dataset,
        file=dataset.files.get(),
        job=job,
        sweep=sweep,
        model=model,
        model2=model2,
        export=export,
        ollama=ollama,
        push=push,
        token=created.token,
        owner_key=created.key,
        other_dataset=other_dataset,
        other_job=other_job,
        other_model=other_model,
        other_export=other_export,
        other_key=other_key,
        owner_sig=exports.download_token(export),
        other_sig=exports.download_token(other_export),
        secrets=(
            owner.username,
            owner.email,
            dataset.name,
            job.name,
            sweep.name,
            model.name,
            ollama.ollama_name,
            push.repo_id,
            created.token.name,
            created.token.prefix,
            export.sha256,
            alpaca_rows()[0]["instruction"],
        ),
    )


def snapshot_sql() -> str:
    """One query: for each table, how many rows it holds and a digest of every row the owner owns (the base-model
    catalogue: of every row), so a call that created, changed or deleted anything shows in one round trip."""
    from django.db import connection

    from accounts.models import ApiToken, User
    from datasets_app.models import Dataset, DatasetFile
    from models_app.models import BaseModel, FineTunedModel, HubPush, ModelExport, OllamaImport
    from training.models import Sweep, TrainingJob

    q = connection.ops.quote_name
    owned = "x.owner_id = %(owner)s"
    tables = [
        ("user", User, "x.id = %(owner)s"),
        ("api tokens", ApiToken, "x.user_id = %(owner)s"),
        ("datasets", Dataset, owned),
        (
            "dataset files",
            DatasetFile,
            f"x.dataset_id IN (SELECT id FROM {q(Dataset._meta.db_table)} WHERE owner_id = %(owner)s)",
        ),
        ("jobs", TrainingJob, owned),
        ("sweeps", Sweep, owned),
        ("models", FineTunedModel, owned),
        ("exports", ModelExport, owned),
        ("ollama imports", OllamaImport, owned),
        ("pushes", HubPush, owned),
        ("base models", BaseModel, "TRUE"),
    ]
    return " UNION ALL ".join(
        f"SELECT '{name}', (SELECT count(*) FROM {q(m._meta.db_table)}), (SELECT md5(coalesce(string_agg("
        f"x::text, '|' ORDER BY x.id), '')) FROM {q(m._meta.db_table)} x WHERE {where})"
        for name, m, where in tables
    )


def snapshot(sql: str, owner_id: int) -> dict[str, tuple[int, str]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, {"owner": owner_id})
        return {name: (count, digest) for name, count, digest in cursor.fetchall()}


# --- calling ---------------------------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    body: bytes
    location: str

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class Matrix:
    """The identities, the calls made and the failures found."""

    SESSION = ("other", "owner")

    def __init__(self, w: World) -> None:
        from django.conf import settings

        from training.runners.modal import callback_token

        self.w, self.failures, self.notes = w, [], []
        self.calls: dict[str, int] = {}  # by identity
        self.sql = snapshot_sql()
        self.cookie_name = settings.SESSION_COOKIE_NAME
        headers = {
            "anon": {},
            "other": {},
            "owner": {},
            "other_token": {"authorization": f"Token {w.other_key}"},
            "owner_token": {"authorization": f"Token {w.owner_key}"},
            "bearer_other_job": {"authorization": f"Bearer {callback_token(w.other_job)}"},
            "bearer_owner_job": {"authorization": f"Bearer {callback_token(w.job)}"},
            "bearer_forged": {"authorization": "Bearer eyJqb2IiOjF9:forged:signature"},
        }
        self.clients = {who: Client(raise_request_exception=False, headers=h) for who, h in headers.items()}
        self.users = {"other": w.other, "owner": w.owner}

    def send(
        self,
        who: str,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
    ) -> tuple[Reply, bool, str]:
        """One call, rolled back; (reply, whether the owner's rows are unchanged, what changed)."""
        client = self.clients[who]
        if who in self.SESSION:  # a logout (or a password change) ended the session: sign in again
            cookie = client.cookies.get(self.cookie_name)
            if cookie is None or not cookie.value:
                client.force_login(self.users[who])
        url = path + ("?" + urlencode(query) if query else "")
        self.calls[who] = self.calls.get(who, 0) + 1
        check = who not in ("owner", "bearer_owner_job")
        unchanged, changed = True, ""
        with transaction.atomic():
            before = snapshot(self.sql, self.w.owner.pk) if check else None
            if method in ("get", "head", "options"):
                r = getattr(client, method)(url)
            else:
                r = getattr(client, method)(
                    url, data=json.dumps(body) if body is not None else "", content_type="application/json"
                )
            # (the test client closes the response, streamed or not, with the connection-closing signal muted)
            content = b"".join(r.streaming_content) if r.streaming else r.content
            if before is not None:
                try:
                    after = snapshot(self.sql, self.w.owner.pk)
                except DatabaseError as exc:
                    after = {"database error after the call": (0, str(exc))}
                changed = ", ".join(f"the owner's {k}" for k, v in after.items() if before.get(k, v)[1] != v[1])
                if r.status_code >= 300:  # a refused call creates nothing at all
                    changed += "".join(
                        f" {k}: {before.get(k, v)[0]} -> {v[0]} rows"
                        for k, v in after.items()
                        if before.get(k, v)[0] != v[0]
                    )
                unchanged = not changed
            transaction.set_rollback(True)
        return Reply(r.status_code, content, r.get("Location", "")), unchanged, changed

    def fail(self, what: str) -> None:
        self.failures.append(what)

    def leaked(self, reply: Reply) -> list[str]:
        text = reply.body.decode("utf-8", "replace")
        return [s for s in self.w.secrets if s in text]


def _fill(template: str, w: World) -> str:
    return template.format(**w.ids())


def url_of(route: str, entry: Entry, w: World, override: dict[str, Any] | None = None) -> str:
    if entry.path is not None:
        return _fill(entry.path, w)
    ids = {**w.ids(), **(override or {})}

    def value(m: re.Match[str]) -> str:
        kind = entry.params.get(m.group(1), entry.kind)
        return kind[1:] if kind.startswith("=") else str(ids[kind])

    return "/" + re.sub(r"<(\w+)>", value, route)


def expected_for(entry: Entry, who: str, method: str) -> tuple[tuple[int, ...] | None, str]:
    """The statuses a non-owner may get (None: anything below 500), and why."""
    kind = entry.kind
    if kind == INTERNAL:
        return (403, 405), KINDS[INTERNAL]
    fixed = {NOT_FOUND: (404,), ADMIN: (302,), REDIRECT: (301, 302), SHELL: (200, 503), SCRAPER: (403,)}
    if kind in fixed:
        return fixed[kind], KINDS[kind]
    if kind == PUBLIC:
        return None, KINDS[PUBLIC]
    if who == "anon":
        return ANON_REFUSED, "anonymous: a user is needed"
    if method in entry.other:
        return entry.other[method]
    if kind in OBJECT_KINDS:
        if method in OPTIONS_OK:
            return OPTIONS_OK[method]
        return (404,), f"{KINDS[kind]}: another user's id answers like a missing one"
    if kind == NONE and method in UNSAFE and entry.body is not None:
        return (400, 404), "ids of the owner's objects in the body are refused"
    return None, KINDS[kind]  # SELF, NONE reads, BASE: the caller's own or shared data (no leak)


def results_of(reply: Reply) -> list[dict[str, Any]]:
    body = reply.json()
    rows = body.get("results", body) if isinstance(body, dict) else body
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def run_route(m: Matrix, route: str, entry: Entry, callback: Any) -> int:
    """Every method of one route by every identity; returns the number of methods."""
    w = m.w
    methods = methods_of(callback, entry)
    path = url_of(route, entry, w)
    whos = ("anon", "other", "other_token", "owner") + (("owner_token",) if entry.kind == INTERNAL else ())
    for method in methods:
        query = entry.query(w) if entry.query else None
        body = entry.body(w) if entry.body and method in ("post", "put", "patch") else None
        for who in whos:
            sent = entry.owner_body(w) if who == "owner" and entry.owner_body and body is not None else body
            reply, unchanged, changed = m.send(who, method, path, query, sent)
            where = f"{method.upper()} {path}{'?' + urlencode(query) if query else ''} as {who}"
            if who in ("owner", "owner_token"):
                check_owner(m, entry, method, reply, where)
                if reply.status >= 500:
                    m.notes.append(f"{where}: {reply.status}")
                if who == "owner":
                    continue
            allowed, why = expected_for(entry, who, method)
            if allowed is not None and reply.status not in allowed:
                m.fail(f"{where}: {reply.status}, expected {allowed} ({why}): {reply.body[:200]!r}")
            elif reply.status >= 500:  # a route without another user's data: a bug, but not an isolation failure
                m.notes.append(f"{where}: {reply.status}")
            if entry.kind == ADMIN and reply.status == 302 and not reply.location.startswith("/admin/login/"):
                m.fail(f"{where}: redirected to {reply.location}, not the admin sign-in")
            if leaks := m.leaked(reply):
                m.fail(f"{where}: {reply.status}, the body names the owner's objects: {leaks}")
            if not unchanged:
                m.fail(f"{where}: {reply.status}, and it changed the owner's rows or created rows: {changed}")
            if entry.listed and who != "anon" and reply.status == 200:
                theirs = {r.get("id") for r in results_of(reply)} & set(owned_ids(w, entry.listed))
                if theirs:
                    m.fail(f"{where}: the list holds the owner's {entry.listed} ids {sorted(theirs)}")
            if who == "other" and entry.kind in OBJECT_KINDS and not entry.params:
                missing, _, _ = m.send(who, method, url_of(route, entry, w, {entry.kind: MISSING}), query, body)
                mine = reply.body.replace(str(w.ids()[entry.kind]).encode(), str(MISSING).encode())
                if missing.status != reply.status or missing.body not in (reply.body, mine):
                    m.fail(
                        f"{where}: {reply.status} {reply.body[:120]!r} but a missing id gives {missing.status} "
                        f"{missing.body[:120]!r}: the answer tells the object exists"
                    )
    for probe in entry.probes:
        path = _fill(probe.path, w)
        reply, unchanged, changed = m.send(
            probe.who,
            probe.method,
            path,
            probe.query(w) if probe.query else None,
            probe.body(w) if probe.body else None,
        )
        where = f"{probe.method.upper()} {path} as {probe.who} ({probe.why})"
        if reply.status not in probe.expect:
            m.fail(f"{where}: {reply.status}, expected {probe.expect}: {reply.body[:200]!r}")
        rightful = probe.who in ("owner", "bearer_owner_job") or reply.status in (200, 302)  # (expected above)
        if not rightful and m.leaked(reply):
            m.fail(f"{where}: the body names the owner's objects: {m.leaked(reply)}")
        if not unchanged:
            m.fail(f"{where}: changed the owner's rows or created rows: {changed}")
    return len(methods)


def owned_ids(w: World, kind: str) -> list[int]:
    return {
        DATASET: [w.dataset.pk],
        JOB: [w.job.pk],
        MODEL: [w.model.pk, w.model2.pk],
        TOKEN: [w.token.pk],
        SWEEP: [w.sweep.pk],
    }[kind]


def check_owner(m: Matrix, entry: Entry, method: str, reply: Reply, where: str) -> None:
    """The owner's GET of an existing object is not refused (the ids were right); the owner's lists hold the owner's
    rows; nobody's session or API token opens an internal endpoint."""
    if entry.kind == INTERNAL:
        if reply.status not in (403, 405):
            m.fail(f"{where}: {reply.status}, but internal endpoints take only a job's callback token")
        return
    if entry.kind in (ADMIN, REDIRECT, NOT_FOUND):
        return
    if entry.kind in (*OBJECT_KINDS, BASE) and method in ("get", "head") and reply.status in (401, 403, 404):
        m.fail(f"{where}: {reply.status} for the owner's own object (wrong ids?): {reply.body[:200]!r}")
    if entry.listed and method == "get":
        got = {r.get("id") for r in results_of(reply)}
        if not set(owned_ids(m.w, entry.listed)) <= got:
            m.fail(f"{where}: {reply.status}, the owner's own list misses their {entry.listed}s: {sorted(got)}")


@pytest.fixture
def idor_settings(settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Stored files in a folder of this test; no Hub reachable; a short playground wait; /api/health/ does not wait
    1 s for a Celery ping on each of its 12 calls (it reports no workers: it carries no user data either way)."""
    from training import operations

    monkeypatch.setattr(operations, "count_workers", lambda timeout=1.0: 0)
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.HF_ENDPOINT = "http://127.0.0.1:9"
    settings.PLAYGROUND_TIMEOUT_S = 2
    return settings


@pytest.mark.django_db
def test_idor_matrix_http(idor_settings: Any) -> None:
    w = make_world()
    m = Matrix(w)
    problems = table_problems()
    served = http_routes()
    n_methods = 0
    for route, callback in served.items():
        if route in ROUTES:
            n_methods += run_route(m, route, ROUTES[route], callback)
    size = (
        f"IDOR matrix (HTTP): {len(served)} routes ({sum(r.startswith('api/') for r in served)} under api/), "
        f"{n_methods} route x method pairs, {sum(m.calls.values())} calls {m.calls}"
    )
    if m.notes:
        size += f"; server errors that are not isolation failures (owner's calls, routes without user data): {m.notes}"
    print(size)
    failures = problems + m.failures
    assert not failures, size + f"; {len(failures)} failures:\n" + "\n".join(failures)


# --- websockets ------------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_idor_matrix_websockets(idor_settings: Any) -> None:
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.db import connections

    from finetune.asgi import application
    from tests.factories import (
        BaseModelFactory,
        DatasetFactory,
        FineTunedModelFactory,
        TrainingJobFactory,
        UserFactory,
    )

    owner, other = UserFactory(username="ws_owner_s3cr3t"), UserFactory(username="ws_prober")
    base = BaseModelFactory()
    job = TrainingJobFactory(
        owner=owner, name="ws-owner-secret-job", dataset=DatasetFactory(owner=owner, rows=False), base_model=base
    )
    model = FineTunedModelFactory(owner=owner, name="ws-owner-secret-model", base_model=base, job=job)
    ids = {"job": job.pk, "model": model.pk, "base": base.pk, "missing": MISSING}

    def cookie(user: Any) -> bytes:
        client = Client()
        client.force_login(user)
        return (
            f"{idor_settings.SESSION_COOKIE_NAME}={client.cookies[idor_settings.SESSION_COOKIE_NAME].value}".encode()
        )

    cookies = {"owner": cookie(owner), "other": cookie(other), "anon": None}

    async def connect(path: str, who: str) -> tuple[bool, int | None, Any]:
        headers = [(b"origin", b"http://localhost")] + ([(b"cookie", cookies[who])] if cookies[who] else [])
        comm = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await comm.connect(timeout=10)
        first = await comm.receive_json_from(timeout=5) if connected and path == "/ws/notifications/" else None
        await comm.disconnect()
        return connected, (None if connected else code), first

    async def scenario() -> list[tuple[str, WsProbe, tuple[bool, int | None, Any], Any]]:
        out = []
        try:
            for route, entry in WS_ROUTES.items():
                for probe in entry.probes:
                    result = await connect(probe.path.format(**ids), probe.who)
                    same = await connect(probe.same_as.format(**ids), probe.who) if probe.same_as else None
                    out.append((route, probe, result, same))
        finally:
            await database_sync_to_async(connections.close_all)()
        return out

    failures = [f"websocket route {r!r} has no entry in WS_ROUTES" for r in ws_routes() if r not in WS_ROUTES]
    results = run_async(scenario())
    for _route, probe, (connected, code, first), same in results:
        where = f"{probe.path.format(**ids)} as {probe.who} ({probe.why})"
        if connected != probe.accepted:
            failures.append(
                f"{where}: {'accepted' if connected else f'refused ({code})'}, expected "
                f"{'accepted' if probe.accepted else 'refused'}"
            )
        if not connected and code is not None and not 4000 <= code < 5000:
            failures.append(f"{where}: closed with {code}, not a 4xxx code")
        if same is not None and (same[0], same[1]) != (connected, code):
            failures.append(f"{where}: {code}, but an id that does not exist gives {same[1]}: the code tells")
        if first is not None and first.get("user") != (other.username if probe.who == "other" else owner.username):
            failures.append(f"{where}: hello names {first.get('user')!r}")
    size = f"IDOR matrix (websockets): {len(WS_ROUTES)} routes, {len(results)} probes"
    print(size)
    assert not failures, size + "\n" + "\n".join(failures)
