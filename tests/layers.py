"""The layers of the code base and the imports between them: the rules tests/test_layers.py enforces and
scripts/shape_report.py reports on (README, "Architecture: where things live").

Bottom to top: the engine (plain Python, no Django) -> the platform's shared infrastructure in `finetune` -> accounts
-> datasets_app -> models_app -> training -> dashboard -> the wiring in `finetune` (settings, URLs, routing, ASGI,
Celery app). A module may import its own app and anything below it. Tests and migrations are left out (a migration
may follow a model that moved between apps)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = "training.engine"
# The parts of `finetune` every app may use (they import no app themselves, the engine aside).
INFRASTRUCTURE = (
    "finetune.exceptions",
    "finetune.serializers",
    "finetune.db",
    "finetune.cache",
    "finetune.artifacts",
    "finetune.pagination",
    "finetune.web",
    "finetune.formatting",
    "finetune.middleware",
    "finetune.redaction",
    "finetune.observability",
)
LAYERS = [ENGINE, "infrastructure", "accounts", "datasets_app", "models_app", "training", "dashboard", "wiring"]
PROJECT = ("finetune", "accounts", "datasets_app", "models_app", "training", "dashboard")


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (None: not part of the project)."""
    if module == ENGINE or module.startswith(ENGINE + "."):
        return ENGINE
    if module.startswith(INFRASTRUCTURE) or module in ("finetune", "finetune.celery"):
        # `from finetune import x` names the package (its __init__ exposes only the Celery app, which any layer may
        # reach through celery.current_app anyway).
        return "infrastructure" if module != "finetune.celery" else "wiring"
    top = module.split(".")[0]
    if top == "finetune":
        return "wiring"
    return top if top in PROJECT else None


def project_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def project_modules() -> list[tuple[str, Path]]:
    """(dotted module name, path) of every project source file, tests and migrations left out."""
    out = []
    for app in PROJECT:
        for path in (ROOT / app).rglob("*.py"):
            if not {"migrations", "tests", "node_modules"} & set(path.relative_to(ROOT).parts):
                name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                out.append((name, path))
    return sorted(out)


def upward_imports() -> list[str]:
    """Every import from a module to a higher layer, as `path:line (layer) imports module (layer)`."""
    problems = []
    for name, path in project_modules():
        src = layer_of(name)
        assert src is not None, name
        for module, line, in_function in project_imports(path):
            dst = layer_of(module)
            if dst is None or LAYERS.index(dst) <= LAYERS.index(src):
                continue
            where = " (inside a function)" if in_function else ""
            problems.append(f"{path.relative_to(ROOT)}:{line} ({src}) imports {module} ({dst}){where}")
    return problems
