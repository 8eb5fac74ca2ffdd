"""The client is installable on its own: it imports neither Django nor any part of the server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client" / "finetune_client"
SERVER = {
    "django",
    "rest_framework",
    "channels",
    "celery",
    "drf_spectacular",
    "finetune",
    "accounts",
    "datasets_app",
    "models_app",
    "training",
    "dashboard",
    "tests",
    "torch",
    "transformers",
}


def test_the_client_imports_nothing_of_the_server():
    offenders = []
    for path in sorted(CLIENT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else []
            )
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in SERVER]
    assert offenders == []


def test_importing_the_client_loads_no_django():
    code = "import sys, finetune_client, finetune_client.cli; print(sorted(m for m in ('django', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"
