"""`make run` with DEBUG off (the default): the secrets of a single-machine install are generated on first start into
a file only the owner can read, reused afterwards, and fill only what the environment leaves unset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent

SOURCE = """
set -euo pipefail
. scripts/load_secrets.sh
echo "$DEBUG|$SECRET_KEY|$FINETUNE_ENCRYPTION_KEYS"
"""


def load(file: Path, **env: str) -> tuple[str, str]:
    """SECRET_KEY and FINETUNE_ENCRYPTION_KEYS after `make run`'s loading step (scripts/load_secrets.sh)."""
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "FINETUNE_ENCRYPTION_KEYS", "DEBUG")}
    out = subprocess.run(
        ["bash", "-c", SOURCE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**base, "PY": sys.executable, "ROOT": str(ROOT), "FINETUNE_SECRETS_FILE": str(file), **env},
    )
    debug, secret, keys = out.stdout.strip().split("|")
    assert debug == "0"  # production settings unless DEBUG=1
    return secret, keys


def test_secrets_are_generated_once_private_and_reused(tmp_path):
    file = tmp_path / "var" / "secrets.env"
    first = load(file)
    assert file.stat().st_mode & 0o777 == 0o600
    assert len(first[0]) >= 50 and Fernet(first[1].encode())  # a usable Fernet key
    assert load(file) == first  # the next start reuses them: sessions and encrypted tokens survive


def test_the_environment_wins_over_the_file(tmp_path):
    file = tmp_path / "secrets.env"
    generated = load(file)
    assert load(file, SECRET_KEY="set-by-the-operator-" + "x" * 40) == (
        "set-by-the-operator-" + "x" * 40,
        generated[1],
    )
