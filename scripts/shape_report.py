"""The code's shape, measured (issue: one direction of dependencies): imports between the project's apps by
direction (module-level and inside functions), cycles between apps, the largest Python modules and functions, and the
largest React components. Tests and migrations are left out.

    .venv/bin/python scripts/shape_report.py

Layers, top to bottom (an import may point down, or sideways in the stated direction between domain apps):
finetune (wiring) -> dashboard -> training -> models_app -> datasets_app -> accounts. `training.engine` is plain Python
that imports none of them; it is counted as part of `training` here, and not as an upward import. The platform's
shared infrastructure in `finetune` (exceptions, serializers, database, cache, artifacts, pagination) sits below every
app: importing it is not upward either.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("finetune", "accounts", "datasets_app", "models_app", "training", "dashboard")
# Higher rank = higher layer; an import from a lower rank to a higher one points up.
RANK = {"accounts": 0, "datasets_app": 1, "models_app": 2, "training": 3, "dashboard": 4, "finetune": 5}
CORE = ("finetune.exceptions", "finetune.serializers", "finetune.db", "finetune.cache", "finetune.artifacts",
        "finetune.pagination", "finetune.web")


def python_files() -> list[Path]:
    out = []
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            rel = path.relative_to(ROOT).parts
            if "migrations" in rel or "tests" in rel:
                continue
            out.append(path)
    return sorted(out)


def _target_app(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in APPS else None


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function, line) for every import of a project app in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, in_function, child.lineno))
            visit(child, nested)

    visit(tree, False)
    return [(m, f, line) for m, f, line in found if _target_app(m)]


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    found: set[tuple[str, ...]] = set()
    for start in list(graph):
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    i = trail.index(min(trail))
                    found.add(tuple(trail[i:] + trail[:i]))
                elif nxt not in trail and len(trail) < 6:
                    stack.append((nxt, trail + [nxt]))
    return [list(c) for c in sorted(found)]


def functions(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
            out.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return out


def react_components() -> list[tuple[int, str]]:
    """Top-level function components in frontend/src (lines from `function X(` / `const X = (` to the closing
    brace at column 0)."""
    out = []
    start = re.compile(r"^(?:export\s+)?(?:default\s+)?(?:function\s+([A-Z]\w*)|const\s+([A-Z]\w*)\s*=)")
    for path in sorted((ROOT / "frontend" / "src").rglob("*.tsx")):
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            m = start.match(lines[i])
            if m:
                j = i + 1
                while j < len(lines) and not lines[j].startswith("}"):
                    j += 1
                out.append((j - i + 1, f"{path.relative_to(ROOT)}:{i + 1} {m.group(1) or m.group(2)}"))
                i = j
            i += 1
    return out


def main() -> int:
    direction: Counter[tuple[str, str]] = Counter()
    in_functions: Counter[tuple[str, str]] = Counter()
    upward: list[str] = []
    module_edges: set[tuple[str, str]] = set()
    sizes, funcs = [], []
    for path in python_files():
        src_app = path.relative_to(ROOT).parts[0]
        sizes.append((len(path.read_text(encoding="utf-8").splitlines()), str(path.relative_to(ROOT))))
        funcs.extend(functions(path))
        for module, in_function, line in imports(path):
            dst_app = _target_app(module)
            if dst_app is None or dst_app == src_app:
                continue
            direction[(src_app, dst_app)] += 1
            if in_function:
                in_functions[(src_app, dst_app)] += 1
            below = module.startswith(("training.engine", *CORE)) or module == "finetune"  # `from finetune import x`
            if not below:
                module_edges.add((src_app, dst_app))
            if RANK[dst_app] > RANK[src_app] and not below:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}"
                              f"{' (inside a function)' if in_function else ''}")
    print("cross-app imports by direction (importer -> imported: all, inside functions):")
    for (a, b), n in sorted(direction.items()):
        print(f"  {a:13s} -> {b:13s} {n:4d}  {in_functions[(a, b)]:4d}")
    print(f"total {sum(direction.values())} cross-app imports, {sum(in_functions.values())} inside functions")
    print(f"upward imports (against {' -> '.join(sorted(RANK, key=RANK.get, reverse=True))}; the engine excepted): "
          f"{len(upward)}")
    for line in upward:
        print(f"  {line}")
    app_cycles = cycles(module_edges)
    pairs = [c for c in app_cycles if len(c) == 2]
    print(f"cycles between apps (engine and shared infrastructure left out): {len(app_cycles)}, of them two-app "
          f"cycles: {len(pairs)}" + "".join(f"\n  {' <-> '.join(c)}" for c in pairs))
    print("largest modules (lines):")
    for n, name in sorted(sizes, reverse=True)[:5]:
        print(f"  {n:5d} {name}")
    print("largest functions (lines):")
    for n, name in sorted(funcs, reverse=True)[:5]:
        print(f"  {n:5d} {name}")
    print("largest React components (lines):")
    for n, name in sorted(react_components(), reverse=True)[:5]:
        print(f"  {n:5d} {name}")
    over = [s for s in sizes if s[0] > 500]
    long_funcs = [f for f in funcs if f[0] > 80]
    print(f"modules over 500 lines: {len(over)}; functions over 80 lines: {len(long_funcs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
