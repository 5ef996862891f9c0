"""The rules of ../shared/ARCHITECTURE.md that code can check, read from the imports of identity/ and cli/.

An import counts wherever it sits (module level or inside a function: both run); a block under
`if TYPE_CHECKING:` never runs and is skipped (its `else:` runs and counts). `from a import b` imports the
module a.b where there is one, else the module a. cli/ is named by its installed name, identity_cli.
Dynamic imports (importlib) are not seen.

Where today's code breaks a rule, the breach is listed in a KNOWN_* set saying why: the test fails when a
new one appears and when a listed one is gone (take it off the list), so the lists only shrink.
Each rule also has a test on made-up sources that proves its checker can fail.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

# the import graph's components are found by the same code that benchmarks/compare_trees.py counts circles with
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from tree_structure import strongly_connected  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {"identity": REPO_ROOT / "identity", "identity_cli": REPO_ROOT / "cli"}


@dataclass(frozen=True)
class Source:
    module: str
    text: str
    is_package: bool = False


@dataclass(frozen=True)
class Import:
    importer: str
    name: str  # as written, made absolute: `from a import b` gives "a.b"
    target: str  # the module of ours it loads (the longest known prefix of name), else name's top package
    line: int


# --- reading imports ----------------------------------------------------------------------------------------------


def repo_sources() -> dict[str, Source]:
    sources = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            module = ".".join([package, *(parts[:-1] if is_package else parts)])
            sources[module] = Source(module, path.read_text(encoding="utf-8"), is_package)
    return sources


def imports(sources: Mapping[str, Source]) -> list[Import]:
    """Every import that runs in `sources`, resolved to our modules where it names one."""
    found = []
    for source in sources.values():
        for name, line in _imported_names(source):
            found.append(Import(source.module, name, _resolve(name, sources), line))
    return found


def _imported_names(source: Source) -> list[tuple[str, int]]:
    names: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the else branch does run
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(source, node.level, node.module)
            names.extend((f"{base}.{alias.name}" if alias.name != "*" else base, node.lineno) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source.text))
    return names


def _absolute(source: Source, level: int, module: str | None) -> str:
    if not level:
        return module or ""
    package = source.module.split(".") if source.is_package else source.module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str, sources: Mapping[str, Source]) -> str:
    candidate = name
    while candidate:
        if candidate in sources:
            return candidate
        candidate = candidate.rpartition(".")[0]
    return name.split(".")[0]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# --- rule 1: layer arrows point down -----------------------------------------------------------------------------

# The longest matching prefix names a module's layer.
LAYERS = {
    "identity_cli": "cli",
    "identity.api": "api",
    "identity.render": "render",  # an edge helper: the HTML and reports cli and api hand out
    "identity.services": "services",
    "identity.app": "app",
    "identity.faces": "faces",
    "identity.store": "store",
    "identity.evaluation": "evaluation",
    "identity.train": "train",
}
BASE = "base"  # what every layer may use
BASE_MODULES = {
    "identity",
    "identity.config",
    "identity.config_reference",  # the configuration page generated from Settings
    "identity.errors",
    "identity.fsutil",
    "identity.pathnames",
    "identity.process",
    "identity.serialize",  # the one serializer of typed results
}
UNPLACED = "unplaced"
ENGINES = {"faces", "store", "evaluation", "train"}
EDGES = {"cli", "api", "render"}
# What a layer must never import. A layer may skip layers downwards (an edge opens the App that it hands to
# services); evaluation and train sit beside faces and may use it (they run and train recognizers); faces and store
# know nothing of each other; the edges import no store, no metrics and no training (no SQL, no model code:
# ARCHITECTURE.md), and api, render and cli only in that order (`identity serve` starts the API).
FORBIDDEN = {
    "cli": {"store", "evaluation", "train"},
    "api": {"cli", "store", "evaluation", "train"},
    "render": {"cli", "api", "store", "evaluation", "train"},
    "services": EDGES,
    "app": EDGES | {"services"},
    "faces": EDGES | {"services", "app", "store", "evaluation", "train"},
    "store": EDGES | {"services", "app", "faces", "evaluation", "train"},
    "evaluation": EDGES | {"services", "app", "store"},
    "train": EDGES | {"services", "app", "store"},
    BASE: EDGES | {"services", "app"} | ENGINES,
}


def layer(module: str) -> str:
    matches = [prefix for prefix in LAYERS if _within(module, prefix)]
    if matches:
        return LAYERS[max(matches, key=len)]
    return BASE if module in BASE_MODULES else UNPLACED


def upward_imports(found: Iterable[Import], sources: Mapping[str, Source]) -> set[tuple[str, str]]:
    return {
        (i.importer, i.target)
        for i in found
        if i.target in sources and layer(i.target) in FORBIDDEN.get(layer(i.importer), set())
    }


# Breaches on main today, for the lead to fix after the issue 24 merges:
KNOWN_UPWARD: set[tuple[str, str]] = set()


def test_layer_checker_catches_a_lower_layer_importing_an_upper_one() -> None:
    pairs = [
        ("identity.store.sql.x", "identity.app.core"),
        ("identity.faces.x", "identity.services.search.identify"),
        ("identity.faces.x", "identity.store.sql.db"),
        ("identity.store.vectors.x", "identity.faces.types"),
        ("identity.app.x", "identity.services.deployment"),
        ("identity.services.x", "identity.api.errors"),
        ("identity.services.x", "identity_cli.output"),
        ("identity.services.x", "identity.render.audit_html"),
        ("identity.api.x", "identity_cli.main"),
        ("identity.render.x", "identity.api.errors"),
        ("identity_cli.x", "identity.store.sql.db"),
        ("identity.evaluation.x", "identity.app.core"),
        ("identity.train.x", "identity.store.sql.db"),
        ("identity.config", "identity.faces.packs"),
    ]
    for importer, imported in pairs:
        sources = {
            importer: Source(importer, f"def f():\n    import {imported}\n"),
            imported: Source(imported, ""),
        }
        assert upward_imports(imports(sources), sources) == {(importer, imported)}, (importer, imported)


def test_layer_checker_allows_downward_and_type_checking_imports() -> None:
    text = (
        "from typing import TYPE_CHECKING\nfrom identity.app.core import App\nfrom identity.store.sql import db\n"
        "from identity.errors import NotFound\nif TYPE_CHECKING:\n    from identity.api.errors import ApiError\n"
    )
    names = ["identity.services.x", "identity.app.core", "identity.store.sql.db", "identity.errors", "identity.api"]
    sources = {name: Source(name, text if name == "identity.services.x" else "") for name in names}
    assert upward_imports(imports(sources), sources) == set()


def test_every_module_has_a_layer_and_imports_only_downwards() -> None:
    sources = repo_sources()
    assert [m for m in sources if layer(m) == UNPLACED] == [], "place a new top-level module in LAYERS or BASE_MODULES"
    found = upward_imports(imports(sources), sources)
    assert found - KNOWN_UPWARD == set(), "an import against ARCHITECTURE.md's arrows"
    assert KNOWN_UPWARD - found == set(), "fixed: take it off KNOWN_UPWARD"


# --- rule 2: the edges use the faces package, not its insides ---------------------------------------------------

# cli/ and identity/api may use what `identity.faces` exports (its __init__: image loading, the pipeline, the pack
# list), never a module inside it; render may also use the image loading module.
EDGE_FACES_ALLOWED = {"identity.faces"}
RENDER_FACES_ALLOWED = {"identity.faces", "identity.faces.images"}


def faces_internals_at_edges(found: Iterable[Import]) -> set[tuple[str, str]]:
    breaches = set()
    for i in found:
        importer_layer = layer(i.importer)
        if importer_layer in EDGES and _within(i.target, "identity.faces"):
            allowed = RENDER_FACES_ALLOWED if importer_layer == "render" else EDGE_FACES_ALLOWED
            if i.target not in allowed:
                breaches.add((i.importer, i.target))
    return breaches


def test_faces_internals_checker_can_fail() -> None:
    modules = ["identity.faces", "identity.faces.pipeline", "identity.faces.images"]
    text = "from identity.faces import load_image\nimport identity.faces.pipeline\nimport identity.faces.images\n"
    sources = {m: Source(m, "", m == "identity.faces") for m in modules}
    sources |= {m: Source(m, text) for m in ("identity_cli.x", "identity.api.x", "identity.render.x")}
    assert faces_internals_at_edges(imports(sources)) == {
        ("identity_cli.x", "identity.faces.pipeline"),
        ("identity_cli.x", "identity.faces.images"),
        ("identity.api.x", "identity.faces.pipeline"),
        ("identity.api.x", "identity.faces.images"),
        ("identity.render.x", "identity.faces.pipeline"),
    }


def test_edges_use_only_the_faces_package() -> None:
    assert faces_internals_at_edges(imports(repo_sources())) == set()


# --- rule 3: no import circles ----------------------------------------------------------------------------------


def import_circles(found: Iterable[Import], sources: Mapping[str, Source]) -> dict[frozenset[str], list[str]]:
    """Each group of modules that import each other (a strongly connected component), with one circle through it."""
    graph: dict[str, set[str]] = {module: set() for module in sources}
    for i in found:
        if i.target in sources and i.target != i.importer:
            graph[i.importer].add(i.target)
    return {
        frozenset(group): _a_circle(graph, group) for group in map(set, strongly_connected(graph)) if len(group) > 1
    }


def _a_circle(graph: Mapping[str, set[str]], group: set[str]) -> list[str]:
    """The shortest path from the group's first module back to itself, staying in the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & group):
                if child == start:
                    return [*paths[node], start]
                if child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not strongly connected")


# Circles on main today (the members of each), for the lead to fix after the issue 24 merges:
KNOWN_CIRCLES: set[frozenset[str]] = set()


def test_circle_checker_finds_circles_through_function_level_imports() -> None:
    sources = {
        "identity.a": Source("identity.a", "import identity.b\n"),
        "identity.b": Source("identity.b", "def f():\n    from identity.c import thing\n"),
        "identity.c": Source("identity.c", "from identity import a\n"),
        "identity.d": Source("identity.d", "import identity.a\n"),
        "identity": Source("identity", "", is_package=True),
    }
    assert import_circles(imports(sources), sources) == {
        frozenset({"identity.a", "identity.b", "identity.c"}): ["identity.a", "identity.b", "identity.c", "identity.a"]
    }


def test_circle_checker_skips_type_checking_imports() -> None:
    sources = {
        "identity.a": Source("identity.a", "import identity.b\n"),
        "identity.b": Source("identity.b", "import typing\nif typing.TYPE_CHECKING:\n    import identity.a\n"),
    }
    assert import_circles(imports(sources), sources) == {}


def test_no_import_circles_in_identity_and_cli() -> None:
    sources = repo_sources()
    circles = import_circles(imports(sources), sources)
    new = [" -> ".join(circle) for group, circle in circles.items() if group not in KNOWN_CIRCLES]
    assert new == [], "modules that import each other, e.g. along this circle"
    assert KNOWN_CIRCLES - set(circles) == set(), "fixed: take it off KNOWN_CIRCLES"


# --- rule 4: libraries stay home ----------------------------------------------------------------------------------

# Which of our packages may import a library, from ARCHITECTURE.md: the edges hold "no SQL, no model code" and
# services run every statement through identity/store/sql (app owns the engine); only the VectorIndex
# implementations talk to Qdrant; detectors, recognizers and the device adapter are faces' (train fine-tunes);
# rendering lives at the edges.
LIBRARY_HOMES = {
    "sql": ({"sqlalchemy", "alembic", "psycopg2"}, {"identity.store", "identity.app"}),
    "vector engine": ({"qdrant_client", "qdrant_edge"}, {"identity.store.vectors"}),
    "model code": (
        {"torch", "onnxruntime", "onnx", "dlib", "insightface", "cv2", "face_recognition_models"},
        {"identity.faces", "identity.train"},
    ),
    "presentation": (
        {"typer", "click", "rich", "fastapi", "starlette", "uvicorn", "jinja2", "matplotlib", "itsdangerous"},
        {"identity_cli", "identity.api", "identity.render"},
    ),
}
KNOWN_AWAY_FROM_HOME: set[tuple[str, str]] = set()


def libraries_away_from_home(found: Iterable[Import], kind: str) -> set[tuple[str, str]]:
    libraries, homes = LIBRARY_HOMES[kind]
    return {
        (i.importer, top)
        for i in found
        if (top := i.name.split(".")[0]) in libraries and not any(_within(i.importer, home) for home in homes)
    }


@pytest.mark.parametrize("kind", LIBRARY_HOMES)
def test_library_checker_can_fail(kind: str) -> None:
    library = sorted(LIBRARY_HOMES[kind][0])[0]
    text = f"def f():\n    from {library}.sub import thing\n"
    importers = ["identity.services.x", "identity.store.sql.x", "identity_cli.x", "identity.config"]
    sources = {m: Source(m, text) for m in importers}
    homes = LIBRARY_HOMES[kind][1]
    expected = {(m, library) for m in importers if not any(_within(m, home) for home in homes)}
    assert expected and libraries_away_from_home(imports(sources), kind) == expected


def test_library_checker_allows_a_library_at_home() -> None:
    sources = {
        "identity.store.vectors.edge": Source("identity.store.vectors.edge", "import qdrant_edge\n"),
        "identity.store.sql.db": Source("identity.store.sql.db", "from sqlalchemy import text\n"),
        "identity.faces.x": Source("identity.faces.x", "import torch\n"),
        "identity_cli.x": Source("identity_cli.x", "import typer\n"),
    }
    assert all(libraries_away_from_home(imports(sources), kind) == set() for kind in LIBRARY_HOMES)


def test_libraries_stay_home() -> None:
    found = imports(repo_sources())
    away = {breach for kind in LIBRARY_HOMES for breach in libraries_away_from_home(found, kind)}
    assert away - KNOWN_AWAY_FROM_HOME == set(), "see LIBRARY_HOMES for where that library belongs"
    assert KNOWN_AWAY_FROM_HOME - away == set(), "fixed: take it off KNOWN_AWAY_FROM_HOME"


def test_no_service_imports_sqlalchemy_at_runtime() -> None:
    """Services orchestrate and own transactions; every statement is a function of identity/store/sql."""
    found = imports(repo_sources())
    assert len({i.importer for i in found if layer(i.importer) == "services"}) > 10
    assert {b for b in libraries_away_from_home(found, "sql") if layer(b[0]) == "services"} == set(), (
        "import what the service needs from identity.store.sql instead"
    )


# --- rule 5: only the registry activates a model -----------------------------------------------------------------

MODEL_WRITERS = {"identity.store.sql.model_rows.activate_model", "identity.store.sql.model_rows.ensure_model"}
REGISTRY = "identity.app.registry"
KNOWN_MODEL_WRITERS: set[tuple[str, str]] = set()


def model_writers_outside_the_registry(found: Iterable[Import]) -> set[tuple[str, str]]:
    """Who imports the functions that record or activate a model row, other than the registry."""
    return {(i.importer, i.name) for i in found if i.name in MODEL_WRITERS and i.importer != REGISTRY}


def test_model_writer_checker_can_fail() -> None:
    text = "def f():\n    from identity.store.sql.model_rows import activate_model, find_model\n"
    sources = {m: Source(m, text) for m in ("identity.services.x", REGISTRY)}
    assert model_writers_outside_the_registry(imports(sources)) == {
        ("identity.services.x", "identity.store.sql.model_rows.activate_model")
    }


def test_only_the_registry_records_and_activates_models() -> None:
    found = model_writers_outside_the_registry(imports(repo_sources()))
    assert found - KNOWN_MODEL_WRITERS == set(), "resolve and activate models through identity.app.registry"
    assert KNOWN_MODEL_WRITERS - found == set(), "fixed: take it off KNOWN_MODEL_WRITERS"


# --- reading imports, proved --------------------------------------------------------------------------------------


def test_imports_are_read_wherever_they_run_and_resolved_to_modules() -> None:
    lines = [
        "import sqlalchemy.orm",
        "from typing import TYPE_CHECKING",
        "if TYPE_CHECKING:",
        "    from sqlalchemy import Engine",
        "else:",
        "    from sqlalchemy import text",
        "def f():",
        "    from .sibling import thing",
        "from identity.pkg import sibling, name",
        "from ..errors import NotFound",
    ]
    text = "\n".join(lines)
    sources = {
        "identity.pkg.mod": Source("identity.pkg.mod", text),
        "identity.pkg": Source("identity.pkg", "", is_package=True),
        "identity.pkg.sibling": Source("identity.pkg.sibling", ""),
    }
    found = [(i.name, i.target, i.line) for i in imports(sources) if i.importer == "identity.pkg.mod"]
    assert found == [
        ("sqlalchemy.orm", "sqlalchemy", 1),
        ("typing.TYPE_CHECKING", "typing", 2),
        ("sqlalchemy.text", "sqlalchemy", 6),
        ("identity.pkg.sibling.thing", "identity.pkg.sibling", 8),
        ("identity.pkg.sibling", "identity.pkg.sibling", 9),
        ("identity.pkg.name", "identity.pkg", 9),
        ("identity.errors.NotFound", "identity", 10),
    ]
