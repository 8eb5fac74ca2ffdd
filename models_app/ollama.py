"""Import a fine-tuned model into the deployment's Ollama server: a verified GGUF, a Modelfile derived from the model's
own chat template, Ollama's REST API (blobs, create, tags, generate), then a golden-prompt check of the created model.

The REST client speaks the current Ollama API (``/api/create`` with ``files``); tests point ``OLLAMA_HOST`` at a
local fake (``tests/fakes/ollama.py``) that runs the uploaded GGUF in llama.cpp, so this code runs unchanged there.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import uuid
from typing import IO, Any
from urllib.parse import urlparse

import requests
from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from accounts.realtime import publish_task_progress
from finetune.exceptions import ServiceError
from models_app.modelfile import ChatFormat, chat_format_for, create_request, default_parameters, render_modelfile
from models_app.models import FineTunedModel, ModelExport, OllamaImport, TaskStatus

logger = logging.getLogger(__name__)

KIND = "ollama-import"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}(:[a-z0-9._-]{1,64})?$")
NAME_RULES = (
    "use 1-63 lowercase letters, digits, '.', '_' or '-' starting with a letter or digit, optionally followed by "
    "':tag' (e.g. 'my-model' or 'my-model:v2'), optionally after your own namespace ('<namespace>/my-model')"
)
# Statuses of an import that holds its name on the server (a failed or cancelled one never created it).
HOLDING = ("queued", "running", "succeeded")


# --- the REST client ------------------------------------------------------------------------------------------------


class OllamaError(Exception):
    """Ollama refused a request or answered something unexpected; the message is shown to the user."""


class OllamaUnreachable(OllamaError):
    """No Ollama server answered at the configured host."""


def normalize_host(host: str) -> str:
    """``OLLAMA_HOST`` as Ollama's own CLI accepts it ("0.0.0.0:11434", "host", "https://h") -> a base URL."""
    host = (host or "").strip().rstrip("/")
    if not host:
        host = "http://127.0.0.1:11434"
    if "://" not in host:
        host = f"http://{host}"
    parsed = urlparse(host)
    if parsed.port is None and parsed.scheme == "http" and not parsed.path:
        host = f"{host}:11434"
    return host


class OllamaClient:
    """A small client for the Ollama REST API (https://github.com/ollama/ollama/blob/main/docs/api.md)."""

    def __init__(self, host: str, *, timeout_s: float | None = None, long_timeout_s: float | None = None) -> None:
        self.host = normalize_host(host)
        self.timeout_s = float(timeout_s if timeout_s is not None else settings.OLLAMA_TIMEOUT_S)
        self.long_timeout_s = float(
            long_timeout_s if long_timeout_s is not None else settings.OLLAMA_GENERATE_TIMEOUT_S
        )
        self.session = requests.Session()

    def _request(self, method: str, path: str, *, what: str, long: bool = False, **kwargs: Any) -> requests.Response:
        url = f"{self.host}{path}"
        timeout = (self.timeout_s, self.long_timeout_s if long else self.timeout_s)
        try:
            response = self.session.request(method, url, timeout=timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise OllamaUnreachable(
                f"Cannot reach the Ollama server at {self.host} ({_reason(exc)}). Check that Ollama is running "
                "there (`ollama serve`) and that OLLAMA_HOST points at it."
            ) from exc
        except requests.Timeout as exc:
            raise OllamaUnreachable(f"The Ollama server at {self.host} did not answer {what} in time.") from exc
        except requests.RequestException as exc:
            raise OllamaError(f"Request to the Ollama server at {self.host} failed ({what}): {exc}") from exc
        return response

    @staticmethod
    def _raise_for(response: requests.Response, what: str) -> None:
        if response.status_code < 400:
            return
        detail = ""
        try:
            body = response.json()
            detail = str(body.get("error") or "") if isinstance(body, dict) else ""
        except ValueError:
            detail = response.text[:300].strip()
        message = f"Ollama refused {what} (HTTP {response.status_code})"
        raise OllamaError(f"{message}: {detail}" if detail else f"{message}.")

    def version(self) -> str:
        """The server's version (``GET /api/version``); "" if the server does not say."""
        response = self._request("GET", "/api/version", what="the version request")
        if response.status_code == 404:
            return ""
        self._raise_for(response, "the version request")
        return str(response.json().get("version") or "")

    def tags(self) -> list[dict[str, Any]]:
        """The models the server has (``GET /api/tags``)."""
        response = self._request("GET", "/api/tags", what="the model list request")
        self._raise_for(response, "the model list request")
        try:
            models = response.json().get("models") or []
        except (ValueError, AttributeError) as exc:
            raise OllamaError(f"The server at {self.host} does not look like Ollama (/api/tags).") from exc
        return [m for m in models if isinstance(m, dict)]

    def has_blob(self, digest: str) -> bool:
        """True when the server already holds the blob ``sha256:<digest>`` (``HEAD /api/blobs/<digest>``)."""
        response = self._request("HEAD", f"/api/blobs/sha256:{digest}", what="the blob check")
        if response.status_code == 404:
            return False
        self._raise_for(response, "the blob check")
        return True

    def push_blob(self, digest: str, fileobj: IO[bytes], size: int) -> None:
        """Upload a file as the blob ``sha256:<digest>`` (``POST /api/blobs/<digest>``), streamed from ``fileobj``."""
        response = self._request(
            "POST",
            f"/api/blobs/sha256:{digest}",
            what="the GGUF upload",
            long=True,
            data=_SizedReader(fileobj, size),
            headers={"Content-Type": "application/octet-stream"},
        )
        self._raise_for(response, "the GGUF upload")

    def create(self, body: dict[str, Any]) -> list[str]:
        """``POST /api/create`` (streamed): the status lines; OllamaError on an error line or no final "success"."""
        response = self._request(
            "POST", "/api/create", what="the model creation", long=True, json={**body, "stream": True}, stream=True
        )
        self._raise_for(response, "the model creation")
        statuses: list[str] = []
        try:
            for line in response.iter_lines():
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise OllamaError(f"Ollama sent an unreadable progress line: {line[:200]!r}") from exc
                if event.get("error"):
                    raise OllamaError(f"Ollama could not create the model: {event['error']}")
                if event.get("status"):
                    statuses.append(str(event["status"]))
        except requests.RequestException as exc:
            raise OllamaError(f"The connection to Ollama broke while it created the model: {exc}") from exc
        finally:
            response.close()
        if not statuses or statuses[-1] != "success":
            raise OllamaError(f"Ollama did not finish creating the model (last status: {statuses[-1:] or 'none'}).")
        return statuses

    def generate(
        self, model: str, prompt: str, *, options: dict[str, Any] | None = None, system: str | None = None
    ) -> dict[str, Any]:
        """``POST /api/generate`` with ``stream: false``: the whole answer."""
        body: dict[str, Any] = {"model": model, "prompt": prompt, "stream": False, "options": options or {}}
        if system is not None:
            body["system"] = system
        response = self._request("POST", "/api/generate", what="the test generation", long=True, json=body)
        self._raise_for(response, "the test generation")
        try:
            data = response.json()
        except ValueError as exc:
            raise OllamaError("Ollama answered the test generation with something that is not JSON.") from exc
        if not isinstance(data, dict) or "response" not in data:
            raise OllamaError("Ollama's generate answer has no 'response'.")
        return data


class _SizedReader:
    """A file object with a known length, so requests streams it with Content-Length (not chunked)."""

    def __init__(self, fileobj: IO[bytes], size: int) -> None:
        self.fileobj, self.size = fileobj, size

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        return self.fileobj.read(n)


def _reason(exc: Exception) -> str:
    text = str(exc)
    for hint in ("Connection refused", "Name or service not known", "No route to host", "timed out"):
        if hint.lower() in text.lower():
            return hint.lower()
    return type(exc).__name__


def load_tokenizer(model: FineTunedModel) -> Any:
    """The fine-tuned model's tokenizer (saved next to the adapter/model, else the base model's)."""
    from transformers import AutoTokenizer

    from models_app.artifacts import base_model_folder, model_folder

    with model_folder(model) as folder:
        if (folder / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(str(folder))
    with base_model_folder(model.base_model) as base_path:
        return AutoTokenizer.from_pretrained(base_path)


# --- services -------------------------------------------------------------------------------------------------------


def namespace_of(user: User) -> str:
    """The user's Ollama namespace: every model they import is `<namespace>/<name>`, so one user can never overwrite
    what another runs with `ollama run` (the username, lowercased, other characters as '-'; `user<id>` if nothing is
    left)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", user.username.lower()).strip("-._")[:63]
    return slug or f"user{user.pk}"


def validate_name(name: str, user: User) -> str:
    """The full Ollama model name `<namespace>/<name>[:tag]` for ``user``, or ServiceError (field ``name``): a bad
    name, or another user's namespace."""
    name = (name or "").strip()
    namespace = namespace_of(user)
    given_namespace, slash, bare = name.rpartition("/")
    if slash and given_namespace != namespace:
        raise ServiceError(
            f"Ollama names of yours live in your namespace {namespace!r}: name the model "
            f"'{namespace}/{bare}' or just '{bare}'.",
            field="name",
        )
    if not NAME_RE.match(bare):
        raise ServiceError(f"Invalid Ollama model name {name!r}: {NAME_RULES}.", field="name")
    return f"{namespace}/{bare}"


def check_name_free(name: str, user: User, host: str) -> None:
    """Refuse (409) a name another user's import holds on this Ollama server (two usernames can share a namespace,
    e.g. 'Ann' and 'ann')."""
    wanted = _full_name(name)
    held = (
        OllamaImport.objects.filter(host=host, status__in=HOLDING)
        .exclude(owner=user)
        .values_list("ollama_name", flat=True)
    )
    if any(_full_name(other) == wanted for other in held):
        raise ServiceError(
            f"The Ollama name {name!r} belongs to another user; choose another name.", field="name", status_code=409
        )


def request_ollama_import(user: User, model_id: int, name: str, *, quantization: str | None = None) -> OllamaImport:
    """Validate the name, record an import of the user's model (its GGUF in ``quantization``, default
    OLLAMA_QUANTIZATION) and enqueue it once the transaction commits."""
    from models_app.exports import QUANTIZATIONS, get_owned_model, normalize_quantization

    quant = normalize_quantization(quantization or settings.OLLAMA_QUANTIZATION)
    if quant not in QUANTIZATIONS:
        raise ServiceError(
            f"GGUF quantization {quantization!r} is not supported; choose one of: "
            f"{', '.join(q.upper() for q in QUANTIZATIONS)}.",
            field="quantization",
        )

    model = get_owned_model(user, model_id)
    name = validate_name(name, user)
    from models_app.artifacts import require_files

    require_files(model, "imported")
    host = normalize_host(settings.OLLAMA_HOST)
    with transaction.atomic():
        # Serialized per server by a transaction-level advisory lock: two users asking for one name at once cannot
        # both pass the check.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"ollama-name:{host}"])
        check_name_free(name, user, host)
        row = OllamaImport.objects.create(
            owner=user,
            model=model,
            ollama_name=name,
            host=host,
            quantization=quant,
            run_token=uuid.uuid4().hex,
        )
        token = row.run_token
        transaction.on_commit(lambda: _enqueue(row.pk, token))
    logger.info("ollama import %s: %s -> %s queued", row.pk, model, name)
    return row


def _enqueue(import_id: int, token: str) -> None:
    current_app.send_task("models_app.tasks.exports.run_ollama_import", args=[import_id, token], queue="default")


def _progress(row: OllamaImport, fraction: float, stage: str) -> None:
    row.progress, row.stage = fraction, stage
    OllamaImport.objects.filter(pk=row.pk).update(progress=fraction, stage=stage)
    publish_task_progress(row.owner_id, kind=KIND, task_id=row.pk, progress=fraction, status=row.status)


def _finish(row: OllamaImport, status: str, *, error: str = "") -> None:
    row.status, row.error, row.finished = status, error, timezone.now()
    row.progress = 1.0 if status == TaskStatus.SUCCEEDED else row.progress
    row.save(update_fields=["status", "error", "finished", "progress", "stage", "modelfile", "verification"])
    publish_task_progress(row.owner_id, kind=KIND, task_id=row.pk, progress=row.progress, status=status)


def run_ollama_import(import_id: int, run_token: str) -> OllamaImport | None:
    """Run one queued import: verified GGUF, blob upload, create, golden-prompt check. Repeats are no-ops."""
    claimed = OllamaImport.objects.filter(pk=import_id, run_token=run_token, status=TaskStatus.QUEUED).update(
        status=TaskStatus.RUNNING, started=timezone.now(), progress=0.01, stage="starting"
    )
    if not claimed:
        logger.info("ollama import %s: run %s is stale or done, skipping", import_id, run_token)
        return None
    row = OllamaImport.objects.select_related("model", "model__base_model").get(pk=import_id)
    try:
        _run(row)
    except (OllamaError, ServiceError) as exc:
        logger.info("ollama import %s failed: %s", row.pk, exc)
        _finish(row, TaskStatus.FAILED, error=str(exc))
    except Exception:
        logger.exception("ollama import %s: internal error", row.pk)
        _finish(row, TaskStatus.FAILED, error="The import failed because of an internal error; see the server logs.")
        raise
    else:
        _finish(row, TaskStatus.SUCCEEDED)
    return row


def _run(row: OllamaImport) -> None:
    from models_app import exports

    client = OllamaClient(row.host)
    _progress(row, 0.02, "checking the Ollama server")
    client.tags()  # fail fast (before a long export) when the server is unreachable or is not Ollama

    quantization = row.quantization or str(settings.OLLAMA_QUANTIZATION)

    def on_export(fraction: float, stage: str) -> None:
        _progress(row, 0.05 + 0.55 * fraction, f"GGUF export: {stage}")

    export = exports.ensure_verified_gguf(row.model, quantization, on_progress=on_export)
    if export.status != TaskStatus.SUCCEEDED:
        raise ServiceError(f"The GGUF export (id {export.pk}) failed, so nothing was imported: {export.error}")

    _progress(row, 0.62, "reading the model's chat template")
    fmt = chat_format_for(load_tokenizer(row.model))
    parameters = default_parameters(_context_length(row.model))
    gguf_name = exports.export_file_name(export)
    row.modelfile = render_modelfile(fmt, parameters, gguf_name)
    row.verification = {
        "export_id": export.pk,
        "quantization": quantization,
        "digest": f"sha256:{export.sha256}",
        "template": fmt.to_dict(),
    }
    OllamaImport.objects.filter(pk=row.pk).update(modelfile=row.modelfile, verification=row.verification)

    _progress(row, 0.66, "uploading the GGUF to Ollama")
    if client.has_blob(export.sha256):
        row.verification["blob"] = "already on the server"
    else:
        with exports.open_export(export) as fh:
            client.push_blob(export.sha256, fh, export.size_bytes)
        row.verification["blob"] = "uploaded"

    _progress(row, 0.85, "creating the Ollama model")
    statuses = client.create(create_request(row.ollama_name, export.sha256, gguf_name, fmt, parameters))
    row.verification["create"] = statuses

    _progress(row, 0.92, "checking the model's answer to a golden prompt")
    row.verification["golden"] = verify_answer(client, row.ollama_name, export, fmt)
    listed = _full_name(row.ollama_name) in {_full_name(str(m.get("name") or m.get("model"))) for m in client.tags()}
    row.verification["listed"] = listed
    if not listed:
        raise OllamaError(f"Ollama reported success but does not list {row.ollama_name!r} in /api/tags.")
    if not row.verification["golden"]["match"]:
        raise OllamaError(row.verification["golden"]["reason"])
    row.stage = "ready"


def _full_name(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def _context_length(model: FineTunedModel) -> int:
    if model.base_model.context_length:
        return int(model.base_model.context_length)
    from models_app.artifacts import model_folder

    try:
        with model_folder(model) as folder:
            config = json.loads((folder / "config.json").read_text())
        return int(config.get("max_position_embeddings") or 0)
    except (OSError, ValueError, ServiceError):
        return 0


def verify_answer(client: OllamaClient, name: str, export: ModelExport, fmt: ChatFormat) -> dict[str, Any]:
    """Ask the created model the export's first golden prompt greedily and compare with llama.cpp/transformers."""
    checks = list((export.verification or {}).get("checks") or [])
    if not checks:
        raise ServiceError(f"The GGUF export {export.pk} has no verification report to compare with.")
    reference = checks[0]
    tokens = int((export.verification or {}).get("max_new_tokens") or 24)
    options = {"temperature": 0, "top_k": 1, "top_p": 1.0, "repeat_penalty": 1.0, "seed": 0, "num_predict": tokens}
    reply = client.generate(name, str(reference["prompt"]), options=options)
    answer = str(reply.get("response") or "")
    expected = _strip_stops(str(reference.get("llama_answer") or ""), fmt.stop)
    match, reason, similarity = compare_answers(answer, expected, fmt.stop)
    return {
        "prompt": reference["prompt"],
        "options": options,
        "ollama_answer": answer,
        "llama_cpp_answer": expected,
        "transformers_answer": _strip_stops(str(reference.get("hf_answer") or ""), fmt.stop),
        "similarity": round(similarity, 4),
        "match": match,
        "reason": reason,
        "eval_count": reply.get("eval_count"),
    }


def _strip_stops(text: str, stops: tuple[str, ...]) -> str:
    cut = len(text)
    for stop in stops:
        if stop and stop in text:
            cut = min(cut, text.index(stop))
    return text[:cut]


def compare_answers(answer: str, expected: str, stops: tuple[str, ...]) -> tuple[bool, str, float]:
    """Whether Ollama's greedy answer is the verified llama.cpp answer (allowing numerical drift near the end)."""
    got, want = answer.strip(), expected.strip()
    similarity = difflib.SequenceMatcher(None, got, want, autojunk=False).ratio() if (got or want) else 1.0
    if not got:
        return False, "Ollama's answer to the golden prompt is empty: the template or stop tokens are wrong.", 0.0
    leaked = [marker for marker in (*stops, "<|im_start|>", "<|im_end|>", "<|eot_id|>") if marker and marker in got]
    if leaked:
        return (
            False,
            (
                f"Ollama's answer contains the chat-template marker {leaked[0]!r}: the Modelfile's template "
                f"or stop tokens do not match the model's chat template. Answer: {got!r}"
            ),
            similarity,
        )
    if got == want:
        return True, "identical to the verified llama.cpp answer", similarity
    prefix = len(_common_prefix(got, want))
    if (want.startswith(got) or got.startswith(want)) and prefix >= min(16, len(want)):
        return True, f"same as the verified llama.cpp answer for its first {prefix} characters", similarity
    if similarity >= 0.6 and prefix >= min(16, len(want)):
        return True, f"close to the verified llama.cpp answer (similarity {similarity:.2f})", similarity
    return (
        False,
        (
            f"Ollama's answer to the golden prompt differs from the verified llama.cpp answer "
            f"(similarity {similarity:.2f}).\n    ollama:    {got!r}\n    llama.cpp: {want!r}"
        ),
        similarity,
    )


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]
