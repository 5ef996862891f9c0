"""Layering rules of ARCHITECTURE.md that the code can check: services run no SQL of their own."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = REPO_ROOT / "identity" / "services"


def runtime_imports(source: str, package: str) -> list[int]:
    """Lines that import `package` (or a submodule) when the module runs; `if TYPE_CHECKING:` blocks are skipped."""
    lines: list[int] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the else branch does run
                visit(child)
            return
        if isinstance(node, ast.Import) and any(_within(alias.name, package) for alias in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _within(node.module or "", package):
            lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return lines


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_checker_sees_runtime_imports_and_skips_type_checking_blocks() -> None:
    source = ("import sqlalchemy.orm\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sqlalchemy import Engine\n"
              "else:\n    from sqlalchemy import text\ndef f():\n    from sqlalchemy.exc import DataError\n"
              "import sqlalchemy_utils\nfrom identity.store.sql.db import Session\n")
    assert runtime_imports(source, "sqlalchemy") == [1, 6, 8]


def test_no_service_imports_sqlalchemy_at_runtime() -> None:
    """Services orchestrate and own transactions; every statement is a function of identity/store/sql."""
    modules = sorted(SERVICES.rglob("*.py"))
    assert len(modules) > 10, SERVICES
    found = {str(path.relative_to(REPO_ROOT)): lines for path in modules
             if (lines := runtime_imports(path.read_text(encoding="utf-8"), "sqlalchemy"))}
    assert found == {}, "import what the service needs from identity.store.sql instead"
