"""The code's shape, measured: imports between the project's apps by direction (module-level and inside functions),
imports that point up the layers, cycles between apps, the largest Python modules and functions, and the largest React
components. Tests and migrations are left out.

    .venv/bin/python scripts/shape_report.py

The layers and the rules are tests/layers.py's (the ones tests/test_layers.py enforces). Imports of the engine
(`training.engine`, plain Python below every app) and of the shared infrastructure in `finetune` are counted by app
but make no edge for the cycles.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.layers import LAYERS, layer_of, project_imports, project_modules, upward_imports  # noqa: E402
from tests.layers import PROJECT as APPS  # noqa: E402  (the layer rules the import test enforces)


def _target_app(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in APPS else None


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


def module_cycles() -> list[list[str]]:
    """Groups of project modules that import each other, directly or around a loop (strongly connected components of
    the import graph, imports inside functions included)."""
    modules = dict(project_modules())
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                # `from pkg import mod` depends on pkg.mod; `from pkg import name` on pkg itself.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return sorted(groups)


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
    module_edges: set[tuple[str, str]] = set()
    sizes, funcs = [], []
    for _name, path in project_modules():
        src_app = path.relative_to(ROOT).parts[0]
        sizes.append((len(path.read_text(encoding="utf-8").splitlines()), str(path.relative_to(ROOT))))
        funcs.extend(functions(path))
        for module, _line, in_function in project_imports(path):
            dst_app = _target_app(module)
            if dst_app is None or dst_app == src_app:
                continue
            direction[(src_app, dst_app)] += 1
            if in_function:
                in_functions[(src_app, dst_app)] += 1
            if layer_of(module) not in ("training.engine", "infrastructure"):
                module_edges.add((src_app, dst_app))
    print("cross-app imports by direction (importer -> imported: all, inside functions):")
    for (a, b), n in sorted(direction.items()):
        print(f"  {a:13s} -> {b:13s} {n:4d}  {in_functions[(a, b)]:4d}")
    print(f"total {sum(direction.values())} cross-app imports, {sum(in_functions.values())} inside functions")
    upward = upward_imports()
    print(f"upward imports (layers bottom to top: {' -> '.join(LAYERS)}): {len(upward)}")
    for line in upward:
        print(f"  {line}")
    groups = module_cycles()
    print(
        f"import cycles between modules (groups that import each other): {len(groups)}"
        + "".join(f"\n  {' <-> '.join(g)}" for g in groups)
    )
    app_cycles = cycles(module_edges)
    pairs = sorted({tuple(sorted(c)) for c in app_cycles if len(c) == 2})
    print(
        f"cycles between apps (engine and shared infrastructure left out): {len(app_cycles)}, of them two-app "
        f"cycles: {len(pairs)}" + "".join(f"\n  {' <-> '.join(c)}" for c in pairs)
    )
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
    for n, name in sorted(over + long_funcs, reverse=True):
        print(f"  {n:5d} {name}")
    big = [c for c in react_components() if c[0] > 250]
    print(
        f"React components over 250 lines: {len(big)}"
        + "".join(f"\n  {n:5d} {name}" for n, name in sorted(big, reverse=True))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
