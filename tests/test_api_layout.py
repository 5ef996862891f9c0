"""identity/api has no import circle: its modules' module-level imports (TYPE_CHECKING blocks included) form
no cycle, so routers import the context, never the app module that imports them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_imports(package: Path, name: str) -> dict[str, set[str]]:
    """Each module of `package` (dotted `name`) -> the modules of the package it imports at module level."""
    modules = {f"{name}.{p.stem}" if p.stem != "__init__" else name: p for p in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found: set[str] = set()
        for node in _module_level(tree.body):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[module] = {m for m in found if m in modules and m != module}
    return graph


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run when the module is imported: the body, and the bodies of its top-level if/try blocks."""
    nodes: list[ast.stmt] = []
    for node in body:
        nodes.append(node)
        if isinstance(node, ast.If):
            nodes += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            nodes += _module_level(node.body) + _module_level(node.orelse) + _module_level(node.finalbody)
            for handler in node.handlers:
                nodes += _module_level(handler.body)
    return nodes


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_api_package_has_no_import_circle() -> None:
    graph = module_imports(ROOT / "identity" / "api", "identity.api")
    assert {"identity.api.app", "identity.api.context", "identity.api.errors"} <= set(graph)
    assert cycles(graph) == []


def test_routers_import_the_context_never_the_app() -> None:
    graph = module_imports(ROOT / "identity" / "api", "identity.api")
    importers_of_app = sorted(m for m, imported in graph.items() if "identity.api.app" in imported)
    assert importers_of_app == []


def test_the_cycle_finder_finds_a_circle() -> None:
    """The check can fail: a circle of three modules (and one under TYPE_CHECKING) is found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from x import y\n")
    assert any(isinstance(n, ast.ImportFrom) and n.module == "x" for n in _module_level(tree.body))
