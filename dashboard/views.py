"""The React app's shell: one HTML page for every client-side route, loading the Vite build via its manifest."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.csrf import ensure_csrf_cookie

logger = logging.getLogger(__name__)
ENTRY = "src/main.tsx"


@lru_cache(maxsize=4)
def _read_manifest(path: str, mtime: float) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def frontend_assets() -> dict[str, Any] | None:
    """Script and stylesheet URLs of the built entry, or None when the frontend is not built."""
    if settings.FRONTEND_DEV_URL:
        base = settings.FRONTEND_DEV_URL.rstrip("/")
        return {"scripts": [f"{base}/@vite/client", f"{base}/{ENTRY}"], "styles": [], "dev": True}
    manifest = Path(settings.FRONTEND_BUILD_DIR) / ".vite" / "manifest.json"
    if not manifest.exists():
        return None
    entry = _read_manifest(str(manifest), manifest.stat().st_mtime).get(ENTRY)
    if not entry:
        return None
    styles = [static(f"frontend/{css}") for css in entry.get("css", [])]
    return {"scripts": [static(f"frontend/{entry['file']}")], "styles": styles, "dev": False}


@ensure_csrf_cookie
def frontend_shell(request: HttpRequest) -> HttpResponse:
    """Serve the shell (sets the CSRF cookie); a missing build is explained instead of a blank page."""
    assets = frontend_assets()
    if assets is None:
        logger.warning("frontend build missing at %s", settings.FRONTEND_BUILD_DIR)
        return render(request, "frontend_missing.html", status=503)
    return render(request, "index.html", {"assets": assets})
