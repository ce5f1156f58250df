"""The shape of the code: one import root, no import circles, small modules and functions,
the engine free of Prefect, flows that never touch tables, no private names across modules.

Read from the source with ``ast`` (nothing is imported), so a violation names the file
and line where it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder in the repository -> the package it is installed as (pyproject's package-dir)
PACKAGES = {"planflow": "planflow", "flows": "planflow.flows", "notifications": "planflow.notifications",
            "definitions": "planflow.definitions", "portal": "planflow.portal", "planflow/bpmn": "planflow.bpmn"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# public API of other libraries that happens to start with an underscore
PUBLIC_UNDERSCORED = {"_mapping", "_asdict", "_fields", "_replace", "_make"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            out[name] = path
    return out


MODULES = _modules()
CODE = [*MODULES.values(), *sorted((REPO / "bench").glob("*.py")),
        *sorted((REPO / "definitions").rglob("*.py"))]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(module imported, line) for every import in the module, lazy ones included."""
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
            # "from planflow import store" imports the module planflow.store, not the package's body
            if not all(n in MODULES for n in names):
                found.append((base, node.lineno))
            found += [(n, node.lineno) for n in names]
    return found


def _project_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _line in _imports(name, path):
            if target in MODULES and target != name:
                edges[name].add(target)
    return edges


def test_only_planflow_is_a_top_level_import():
    stray = [f"{path.relative_to(REPO)}:{line}: imports '{target}'"
             for name, path in MODULES.items() for target, line in _imports(name, path)
             if target.split(".")[0] in ("engine", "flows", "notifications", "definitions")]
    assert not stray, "\n".join(stray)


def test_no_import_circle():
    edges = _project_edges()
    # Tarjan's strongly connected components: a component of more than one module is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_engine_imports_neither_prefect_nor_flows():
    engine = {n: p for n, p in MODULES.items() if n.count(".") <= 1 and not n.startswith(
        ("planflow.flows", "planflow.notifications", "planflow.definitions", "planflow.portal"))}
    assert "planflow.interpreter" in engine and "planflow.flows.stages" not in engine
    bad = [f"{path.relative_to(REPO)}:{line}: imports '{target}'"
           for name, path in engine.items() for target, line in _imports(name, path)
           if target.split(".")[0] == "prefect" or target.startswith("planflow.flows")]
    assert not bad, "\n".join(bad)


def test_flows_and_the_portal_never_touch_the_engine_tables():
    flows = {n: p for n, p in MODULES.items() if n.startswith(("planflow.flows", "planflow.portal"))}
    assert any(n.startswith("planflow.portal") for n in flows)
    bad = [f"{path.relative_to(REPO)}:{line}: imports '{target}'"
           for name, path in flows.items() for target, line in _imports(name, path)
           if target.startswith(("planflow.store", "sqlalchemy"))]
    assert not bad, "\n".join(bad)


def test_no_private_name_crosses_a_module():
    bad = []
    for name, path in MODULES.items():
        tree = _tree(path)
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("planflow"):
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    if alias.name.startswith("_") and target not in MODULES:
                        bad.append(f"{path.relative_to(REPO)}:{node.lineno}: imports private {target}")
                    if target in MODULES:
                        aliases[alias.asname or alias.name] = target
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        aliases[alias.asname] = alias.name
        # private names this module defines itself (functions, methods, attributes) are its own
        own = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        own |= {t.attr for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Attribute)}
        own |= {t.id for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and node.attr not in PUBLIC_UNDERSCORED):
                continue
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner in ("self", "cls") or node.attr in own:
                continue
            shown = aliases.get(owner, owner or ast.unparse(node.value))
            bad.append(f"{path.relative_to(REPO)}:{node.lineno}: uses private {shown}.{node.attr}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(REPO)))
def test_module_and_functions_are_small(path):
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(REPO)} has {lines} lines: split it by what its parts are"
    long = [f"{path.relative_to(REPO)}:{node.lineno}: {node.name}() has {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(_tree(path))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, "\n".join(long)
