"""A local fake of the Hugging Face Hub speaking its real HTTP protocol (only what the tests need)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHub:
    """Answers `GET /api/whoami-v2` like huggingface.co: 200 with the user for a known token, 401 otherwise."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                auth = self.headers.get("Authorization", "")
                hub.requests.append({"method": "GET", "path": self.path, "authorization": auth})
                if hub.fail_with:
                    self._json(hub.fail_with, {"error": "Internal Error"})
                    return
                if self.path.split("?")[0] == "/api/whoami-v2":
                    token = auth.removeprefix("Bearer ").strip()
                    name = hub.tokens.get(token)
                    if name is None:
                        self.send_response(401)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("X-Error-Message", "Invalid credentials in Authorization header")
                        data = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                    self._json(
                        200,
                        {
                            "type": "user",
                            "id": "0123456789abcdef",
                            "name": name,
                            "fullname": name.title(),
                            "orgs": [],
                            "auth": {"type": "access_token", "accessToken": {"displayName": "ci", "role": "write"}},
                        },
                    )
                    return
                self._json(404, {"error": "Not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
