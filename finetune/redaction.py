"""No server path reaches a user: the messages of API responses and websocket pushes (errors, details, log lines)
and a job's stored log lines and error go through `hide_server_paths`.

An error raised deep in a library names the file it failed on ("No such file or directory: '/srv/finetune/var/runs/
job-7-a1/checkpoint-5/model.safetensors'"). That tells a user how the host is laid out and nothing they can act on, so
every absolute path under a server folder (the project, media, artifact cache, training runs, the Python installation,
the temporary folder, the home folder and the usual system roots) is shown as `…/<last part>` ("…/model.safetensors").
URLs are left alone: a path counts only where it starts a word (not after `host`, `:` or another `/`).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
from typing import Any

from django.conf import settings
from rest_framework import renderers

# Roots of a typical Unix host; a path under one of them is a server path whatever the settings say.
_SYSTEM_ROOTS = (
    "/tmp",
    "/var",
    "/usr",
    "/opt",
    "/srv",
    "/home",
    "/root",
    "/etc",
    "/work",
    "/app",
    "/mnt",
    "/data",
    "/proc",
    "/dev",
    "/run",
    "/lib",
    "/nix",
    "/private",
)
_PATH_CHARS = r"[^\s'\"`<>|,;()\[\]{}]*"
ELLIPSIS = "…/"


@functools.cache
def _pattern() -> re.Pattern[str]:
    roots = set(_SYSTEM_ROOTS)
    for name in ("BASE_DIR", "MEDIA_ROOT", "ARTIFACT_CACHE_DIR", "TRAINING_RUNS_DIR"):
        value = getattr(settings, name, None)
        if value:
            roots.add(str(value).rstrip("/"))
    roots.update({sys.prefix, sys.base_prefix, tempfile.gettempdir(), os.path.expanduser("~")})
    roots = {r.rstrip("/") for r in roots if r and r.startswith("/") and r.rstrip("/")}
    alternatives = "|".join(re.escape(r) for r in sorted(roots, key=len, reverse=True))
    # Not after a word character, ':', '/', '.' or '~' (URLs, relative paths, "~/..."); the root ends at a '/' or the
    # end of the path, so "/variable" is not under "/var".
    return re.compile(rf"(?<![\w:/.~])(?:{alternatives})(?=/|$|[\s'\"`<>|,;()\[\]{{}}]){_PATH_CHARS}")


def _shorten(match: re.Match[str]) -> str:
    path = match.group(0)
    trailing = ""
    while path and path[-1] in ".:!?":  # sentence punctuation after the path
        trailing = path[-1] + trailing
        path = path[:-1]
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return f"{ELLIPSIS}{last}{trailing}" if last else f"{ELLIPSIS.rstrip('/')}{trailing}"


def hide_server_paths(text: str) -> str:
    """`text` with every server path replaced by `…/<last part>`."""
    if "/" not in text:
        return text
    return _pattern().sub(_shorten, text)


# Keys whose strings are the platform's own words (errors, log lines, progress stages), never a user's data: a
# dataset preview, a generated answer or a chat message keep every character they have, paths included.
MESSAGE_KEYS = frozenset(
    {
        "detail",
        "error",
        "errors",
        "message",
        "line",
        "stage",
        "warning",
        "warnings",
        "reason",
        "hint",
        "last_error",
        "error_message",
    }
)


def hide_in(value: Any, *, inside: bool = False) -> Any:
    """A copy of a JSON-like value with server paths hidden in the strings under MESSAGE_KEYS (at any depth)."""
    if isinstance(value, str):
        return hide_server_paths(value) if inside else value
    if isinstance(value, dict):
        return {k: hide_in(v, inside=inside or k in MESSAGE_KEYS) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [hide_in(v, inside=inside) for v in value]
    return value


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer, with server paths hidden in the response's messages (`hide_in`)."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return super().render(hide_in(data), accepted_media_type, renderer_context)
