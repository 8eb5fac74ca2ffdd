"""Where the CLI finds the platform's URL and token: `--url`/`--token`, else FINETUNE_URL/FINETUNE_TOKEN, else the
file `finetune login` wrote (mode 0600) in the user's config folder."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str
    source: str  # "arguments", "environment", a file path, or a mix ("FINETUNE_URL + config")


def config_path() -> Path:
    """$FINETUNE_CONFIG, else `finetune/config.json` in the user's config folder (XDG_CONFIG_HOME or ~/.config;
    %APPDATA% on Windows)."""
    explicit = os.environ.get("FINETUNE_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "finetune" / "config.json"


def read_config(path: Path | None = None) -> dict[str, str]:
    """The saved `{url, token}` (empty when there is no file)."""
    path = path or config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    return {k: str(v) for k, v in data.items() if k in ("url", "token") and v} if isinstance(data, dict) else {}


def save_config(url: str, token: str, path: Path | None = None) -> Path:
    """Write the URL and token, readable by the user only (0600, in a 0700 folder), replacing the file atomically."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"url": url, "token": token}, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve(url: str | None = None, token: str | None = None) -> Credentials | None:
    """The credentials to use, each value from the first place that has it; None when URL or token is missing."""
    sources = []
    saved: dict[str, str] | None = None

    def pick(given: str | None, env: str, key: str) -> str | None:
        nonlocal saved
        if given:
            sources.append("arguments")
            return given
        if os.environ.get(env):
            sources.append(env)
            return os.environ[env]
        if saved is None:
            saved = read_config()
        if saved.get(key):
            sources.append(str(config_path()))
            return saved[key]
        return None

    found_url, found_token = pick(url, "FINETUNE_URL", "url"), pick(token, "FINETUNE_TOKEN", "token")
    if not found_url or not found_token:
        return None
    return Credentials(found_url.rstrip("/"), found_token, " + ".join(dict.fromkeys(sources)))
