"""A local fake of the Ollama server speaking its real REST API, so production client code runs unchanged.

Endpoints (https://github.com/ollama/ollama/blob/main/docs/api.md):
- ``HEAD /api/blobs/sha256:<hex>``: 200 when the blob exists, else 404.
- ``POST /api/blobs/sha256:<hex>``: stores the body (Content-Length or chunked); 201, or 400 on a digest mismatch.
- ``POST /api/create`` ``{model, files: {name.gguf: "sha256:..."}, template?, system?, parameters?, stream?}``:
  checks that every blob exists and is a GGUF and that the template parses, then answers Ollama's status lines
  (``parsing GGUF`` ... ``success``) as JSON lines, or ``{"error": ...}``.
- ``GET /api/tags``: the created models (``name:tag``, size, digest, details).
- ``POST /api/generate`` ``{model, prompt, system?, template?, raw?, options?, stream?}``: renders the model's
  template (Go text/template subset: ``.System .Prompt .Response``, ``if/else/end``, ``{{- -}}``, cut at
  ``.Response`` as Ollama does) and runs the uploaded GGUF in llama.cpp (``llama_cpp.Llama``) with the model's
  parameters merged with ``options`` (``temperature`` 0 is greedy; ``stop`` strings; ``num_predict``).
- ``GET /api/version``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DIGEST_RE = re.compile(r"^/api/blobs/sha256:([0-9a-f]{64})$")
_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)
DEFAULT_OPTIONS = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "repeat_penalty": 1.1,
    "num_predict": 128,
    "num_ctx": 2048,
    "seed": -1,
}


class TemplateError(ValueError):
    pass


def parse_template(template: str) -> list[Any]:
    """Parse into a tree: str | ("var", name) | ("if", name, then_nodes, else_nodes)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        tokens.append(("text", text))
        tokens.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\r\n"))
    tokens.append(("text", template[pos:]))

    def block(i: int) -> tuple[list[Any], int, str]:
        nodes: list[Any] = []
        while i < len(tokens):
            kind, value = tokens[i]
            i += 1
            if kind == "text":
                if value:
                    nodes.append(value)
            elif value in ("end", "else"):
                return nodes, i, value
            elif value.startswith("if "):
                cond = value[3:].strip()
                then, i, ended = block(i)
                other: list[Any] = []
                if ended == "else":
                    other, i, ended = block(i)
                if ended != "end":
                    raise TemplateError("template: unexpected EOF (an {{ if }} without {{ end }})")
                nodes.append(("if", cond, then, other))
            elif re.fullmatch(r"\.[A-Za-z]+", value):
                nodes.append(("var", value[1:]))
            else:
                raise TemplateError(f"template: unsupported action {{{{ {value} }}}}")
        return nodes, i, ""

    nodes, i, ended = block(0)
    if ended:
        raise TemplateError(f"template: unexpected {{{{ {ended} }}}}")
    return nodes


def render_prompt(template: str, values: dict[str, str]) -> str:
    """Execute the template for a generate request, stopping at ``{{ .Response }}`` like Ollama."""
    out: list[str] = []

    class _Cut(Exception):
        pass

    def run(nodes: list[Any]) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif node[0] == "var":
                if node[1] == "Response":
                    raise _Cut
                out.append(values.get(node[1], ""))
            else:
                _, cond, then, other = node
                run(then if values.get(cond.lstrip(".")) else other)

    try:
        run(parse_template(template))
    except _Cut:
        pass
    return "".join(out)


class FakeOllama:
    """The fake server; ``models`` holds what /api/create stored (keyed ``name:tag``), ``requests`` every call."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="fake-ollama-"))
        self.blobs = self.root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.models: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.fail_with: dict[str, tuple[int, str]] = {}  # path -> (HTTP status, error) to simulate failures
        self._llms: dict[str, Any] = {}
        self._llm_lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _empty(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _lines(self, events: list[dict[str, Any]]) -> None:
                # Ollama streams application/x-ndjson with chunked transfer encoding.
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in events:
                    data = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")

            def _body_chunks(self):  # type: ignore[no-untyped-def]
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return
                        yield self.rfile.read(size)
                        self.rfile.readline()
                else:
                    left = int(self.headers.get("Content-Length") or 0)
                    while left > 0:
                        block = self.rfile.read(min(left, 1 << 20))
                        if not block:
                            return
                        left -= len(block)
                        yield block

            def _read_json(self) -> dict[str, Any]:
                raw = b"".join(self._body_chunks())
                try:
                    data = json.loads(raw or b"{}")
                except ValueError:
                    return {}
                return data if isinstance(data, dict) else {}

            def _record(self, body: Any = None) -> bool:
                path = self.path.split("?")[0]
                fake.requests.append({"method": self.command, "path": path, "body": body})
                failure = fake.fail_with.get(path) or fake.fail_with.get("*")
                if failure:
                    self._json(failure[0], {"error": failure[1]})
                    return True
                return False

            def do_HEAD(self) -> None:  # noqa: N802
                if self._record():
                    return
                m = DIGEST_RE.match(self.path)
                self._empty(200 if m and (fake.blobs / f"sha256-{m.group(1)}").exists() else 404)

            def do_GET(self) -> None:  # noqa: N802
                if self._record():
                    return
                path = self.path.split("?")[0]
                if path == "/api/tags":
                    self._json(200, {"models": [fake._tag(name, m) for name, m in sorted(fake.models.items())]})
                elif path == "/api/version":
                    self._json(200, {"version": "0.0.0-fake"})
                elif path == "/":
                    body = b"Ollama is running"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                m = DIGEST_RE.match(path)
                if m:
                    if path in fake.fail_with or "*" in fake.fail_with:
                        for _ in self._body_chunks():  # drain the upload before answering the simulated failure
                            pass
                    if self._record({"digest": m.group(1)}):
                        return
                    self._post_blob(m.group(1))
                    return
                body = self._read_json()
                if self._record(body):
                    return
                if path == "/api/create":
                    fake._create(self, body)
                elif path == "/api/generate":
                    fake._generate(self, body)
                else:
                    self._json(404, {"error": "not found"})

            def _post_blob(self, digest: str) -> None:
                target = fake.blobs / f"sha256-{digest}"
                tmp = fake.blobs / f".partial-{digest}-{threading.get_ident()}"
                sha = hashlib.sha256()
                with open(tmp, "wb") as fh:
                    for block in self._body_chunks():
                        sha.update(block)
                        fh.write(block)
                if sha.hexdigest() != digest:
                    tmp.unlink()
                    self._json(
                        400, {"error": f"digest mismatch, expected sha256:{digest}, got sha256:{sha.hexdigest()}"}
                    )
                    return
                tmp.replace(target)
                self._empty(201)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle ---

    def start(self) -> FakeOllama:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for llm in self._llms.values():
            llm.close()
        self._llms.clear()

    def reset(self) -> None:
        """Forget models, requests and simulated failures (blobs stay, like on a real server)."""
        self.models.clear()
        self.requests.clear()
        self.fail_with.clear()

    # --- API ---

    @staticmethod
    def full_name(name: str) -> str:
        return name if ":" in name else f"{name}:latest"

    def _tag(self, name: str, model: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": model["modified_at"],
            "size": model["size"],
            "digest": model["digest"],
            "details": {"format": "gguf", "family": "llama", "parameter_size": "", "quantization_level": ""},
        }

    def _create(self, handler: Any, body: dict[str, Any]) -> None:
        name = str(body.get("model") or body.get("name") or "")
        files = body.get("files") or {}
        if not name:
            handler._json(400, {"error": "a model name is required"})
            return
        if not isinstance(files, dict) or not files:
            handler._json(400, {"error": "neither 'from' or 'files' was specified"})
            return
        events: list[dict[str, Any]] = [{"status": "parsing GGUF"}]
        gguf_digest = ""
        for file_name, digest in files.items():
            hexd = str(digest).removeprefix("sha256:")
            blob = self.blobs / f"sha256-{hexd}"
            if not blob.exists():
                handler._json(400, {"error": f"blob sha256:{hexd} not found; upload it with POST /api/blobs first"})
                return
            if str(file_name).endswith(".gguf"):
                with open(blob, "rb") as fh:
                    if fh.read(4) != b"GGUF":
                        handler._lines(events + [{"error": "invalid file magic"}])
                        return
                gguf_digest = hexd
            events.append({"status": f"using existing layer sha256:{hexd}"})
        if not gguf_digest:
            handler._lines(events + [{"error": "no GGUF file in 'files'"}])
            return
        template = body.get("template")
        if template is not None:
            try:
                parse_template(str(template))
            except TemplateError as exc:
                handler._lines(events + [{"error": str(exc)}])
                return
            events.append(
                {"status": "creating new layer sha256:" + hashlib.sha256(str(template).encode()).hexdigest()}
            )
        params = body.get("parameters") or {}
        if params:
            events.append(
                {
                    "status": "creating new layer sha256:"
                    + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
                }
            )
        events += [{"status": "writing manifest"}, {"status": "success"}]
        full = self.full_name(name)
        self.models[full] = {
            "digest": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(),
            "gguf": gguf_digest,
            "files": dict(files),
            "template": template,
            "system": body.get("system"),
            "parameters": dict(params),
            "size": (self.blobs / f"sha256-{gguf_digest}").stat().st_size,
            "modified_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        if body.get("stream") is False:
            handler._json(200, {"status": "success"})
        else:
            handler._lines(events)

    def _llm(self, digest: str, n_ctx: int) -> Any:
        import llama_cpp

        key = f"{digest}:{n_ctx}"
        if key not in self._llms:
            from training.engine.exporters.verify import llama_threads

            path = str(self.blobs / f"sha256-{digest}")
            self._llms[key] = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=llama_threads(), verbose=False)
        return self._llms[key]

    def render(self, name: str, prompt: str, system: str | None = None) -> str:
        """The prompt text /api/generate feeds the model (public so tests can compare it with the chat template)."""
        model = self.models[self.full_name(name)]
        template = model["template"] if model["template"] is not None else "{{ .Prompt }}"
        sys_prompt = system if system is not None else (model["system"] or "")
        return render_prompt(template, {"System": sys_prompt, "Prompt": prompt})

    def _generate(self, handler: Any, body: dict[str, Any]) -> None:
        name = self.full_name(str(body.get("model") or ""))
        model = self.models.get(name)
        if model is None:
            handler._json(404, {"error": f"model '{body.get('model')}' not found"})
            return
        params = {**DEFAULT_OPTIONS, **model["parameters"], **(body.get("options") or {})}
        if body.get("raw"):
            text = str(body.get("prompt") or "")
        else:
            template = body.get("template") or model["template"] or "{{ .Prompt }}"
            system = body.get("system") if body.get("system") is not None else (model["system"] or "")
            text = render_prompt(str(template), {"System": str(system), "Prompt": str(body.get("prompt") or "")})
        stops = params.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        started = dt.datetime.now(dt.UTC)
        with self._llm_lock:
            llm = self._llm(model["gguf"], int(params["num_ctx"]))
            answer, count, reason = self._run(llm, text, params, stops)
        took = int((dt.datetime.now(dt.UTC) - started).total_seconds() * 1e9)
        reply = {
            "model": name,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "response": answer,
            "done": True,
            "done_reason": reason,
            "total_duration": took,
            "eval_count": count,
            "prompt": text,
        }
        if body.get("stream") is False:
            handler._json(200, reply)
        else:
            handler._lines([{**reply, "done": False, "response": answer}, {**reply, "response": ""}])

    @staticmethod
    def _run(llm: Any, text: str, params: dict[str, Any], stops: list[str]) -> tuple[str, int, str]:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        temperature = float(params["temperature"])
        if temperature <= 0:  # Ollama samples greedily at temperature 0
            sampling = {"temp": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}
        else:
            seed = int(params.get("seed", -1))
            if seed >= 0:
                llm.set_seed(seed)
            sampling = {
                "temp": temperature,
                "top_k": int(params["top_k"]),
                "top_p": float(params["top_p"]),
                "min_p": 0.0,
                "repeat_penalty": float(params["repeat_penalty"]),
            }
        out = b""
        count = 0
        limit = int(params["num_predict"])
        # Every request evaluates its whole prompt, as the export's verification does: llama-cpp-python would reuse
        # the cached prefix of the previous prompt and evaluate only the rest, and how a prompt is batched changes
        # llama.cpp's rounding enough to flip a near-tied greedy token (seen with the AVX-512 kernels).
        llm.reset()
        for tok in llm.generate(tokens, reset=True, **sampling):
            if tok == llm.token_eos():
                return out.decode("utf-8", "replace"), count, "stop"
            count += 1
            out += llm.detokenize([tok], special=True)
            decoded = out.decode("utf-8", "ignore")
            hits = [decoded.index(s) for s in stops if s and s in decoded]
            if hits:
                return decoded[: min(hits)], count, "stop"
            if count >= limit:
                return decoded, count, "length"
        return out.decode("utf-8", "replace"), count, "stop"
