"""Static structure of one source tree, read as text (nothing is imported): lines per layer, the largest
modules, the module import graph, its circles and its upward imports. benchmarks/compare_trees.py uses it.

Every import counts, module-level or inside a function; an `if TYPE_CHECKING:` block does not (its else
branch does). `cli/` is the package `identity_cli`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# Layers of ../shared/ARCHITECTURE.md, top first; a higher rank may import a lower one, never the reverse.
# "base": the top-level modules of identity/ other than config (errors, fsutil, config_reference...), shared
# helpers at the bottom, as tests/test_layers.py places them.
RANK = {
    "cli": 4,
    "api": 4,
    "render": 4,
    "services": 3,
    "app": 2,
    "faces": 1,
    "store": 1,
    "evaluation": 0,
    "train": 0,
    "config": 0,
    "base": 0,
}
LAYERS = ("faces", "store", "app", "services", "api", "render", "evaluation", "train", "config", "cli", "base")


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    layer: str
    imports: set[str]


def resolve(imported: set[tuple[str, str]], known: set[str]) -> set[str]:
    """Our modules an import names: `from a import b` is a.b where that is a module, else a (or its deepest parent)."""
    targets = set()
    for base, attribute in imported:
        target = f"{base}.{attribute}" if f"{base}.{attribute}" in known else base
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            targets.add(target)
    return targets


def module_name(tree: Path, path: Path) -> str:
    parts = list(path.relative_to(tree).with_suffix("").parts)
    if parts[0] == "cli":
        parts[0] = "identity_cli"
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "identity_cli":
        return "cli"
    if name == "identity.config":
        return "config"
    if len(parts) > 1 and parts[1] in RANK:
        return parts[1]
    return "base"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(source: str, name: str, is_package: bool) -> set[tuple[str, str]]:
    """(module, name) pairs a module imports at run time: `from a import b` gives (a, b), `import a.b` (a.b, "")."""
    found: set[tuple[str, str]] = set()
    package = name if is_package else name.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.update((base, alias.name) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def read_modules(tree: Path) -> dict[str, Module]:
    paths = [path for top in ("identity", "cli") for path in sorted((tree / top).rglob("*.py"))]
    sources = {module_name(tree, path): path for path in paths}
    modules: dict[str, Module] = {}
    for name, path in sources.items():
        source = path.read_text(encoding="utf-8")
        imported = resolve(imported_names(source, name, path.name == "__init__.py"), set(sources))
        modules[name] = Module(name, path, len(source.splitlines()), layer_of(name), imported - {name})
    return modules


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components, iteratively (the graph is a few hundred modules deep at most)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def structure(tree: Path, largest: int = 10) -> dict:
    """The figures of one tree, JSON-ready."""
    modules = read_modules(tree)
    lines = {layer: sum(m.lines for m in modules.values() if m.layer == layer) for layer in LAYERS}
    graph = {name: module.imports for name, module in modules.items()}
    circles = [c for c in strongly_connected(graph) if len(c) > 1]
    mutual = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph[b]})
    upward = sorted((a, b) for a, m in modules.items() for b in m.imports if RANK[modules[b].layer] > RANK[m.layer])
    pairs: dict[str, int] = {}
    for a, b in upward:  # per pair of layers, so a rule read differently (train beside faces?) can be set apart
        pair = f"{modules[a].layer} -> {modules[b].layer}"
        pairs[pair] = pairs.get(pair, 0) + 1
    biggest = sorted(modules.values(), key=lambda m: -m.lines)[:largest]
    return {
        "modules": len(modules),
        "lines": sum(lines.values()),
        "lines_per_layer": lines,
        "largest_modules": [{"module": str(m.path.relative_to(tree)), "lines": m.lines} for m in biggest],
        "import_edges": sum(len(t) for t in graph.values()),
        "import_circles": len(circles),
        "modules_in_circles": sum(len(c) for c in circles),
        "circles": circles,
        "mutual_imports": [list(p) for p in mutual],
        "upward_imports": len(upward),
        "upward_by_layers": pairs,
        "upward": [f"{a} -> {b}" for a, b in upward],
    }
