"""The routes the platform serves, enumerated for tests that must cover every one of them (the IDOR matrix, the
bad-input bodies): from the URL resolver and from the websocket router the ASGI application really uses."""

from __future__ import annotations

import re
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver


def normalize(pattern: str) -> str:
    """`api/datasets/^(?P<pk>[^/.]+)/preview/$` and `api/models/<int:pk>/export/` -> `api/datasets/<pk>/preview/`,
    `api/models/<pk>/export/`."""
    out = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", pattern.replace("^", "").replace("$", ""))
    return re.sub(r"<\w+:(\w+)>", r"<\1>", out)


def http_routes() -> dict[str, Any]:
    """Every route of the URL resolver by normalized pattern (includes under api/ walked into; any other include,
    i.e. the admin site, is one route), with its callback (None for an include)."""
    found: dict[str, Any] = {}

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            raw = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                if normalize(raw).startswith("api/"):
                    walk(p.url_patterns, raw)
                else:
                    found[normalize(raw)] = None
            elif isinstance(p, URLPattern):
                assert normalize(raw) not in found, f"two routes normalize to {normalize(raw)}"
                found[normalize(raw)] = p.callback

    walk(get_resolver().url_patterns, "")
    return found


def ws_routes() -> dict[str, Any]:
    """The websocket routes the ASGI application really serves (through its origin and auth middleware)."""
    from finetune.asgi import application

    app = application.application_mapping["websocket"]
    while not hasattr(app, "routes"):
        app = getattr(app, "application", None) or app.inner
    return {normalize(str(r.pattern)): r for r in app.routes}
