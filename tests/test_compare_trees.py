"""benchmarks/compare_trees.py's readings: the import graph of a small tree written here, and a rich table read
back (the old tree's scripts print tables, not JSON). Fast: nothing runs but the parsers."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from compare_trees import search_figures, table_rows, verdict  # noqa: E402
from tree_structure import structure  # noqa: E402

TREE = {
    "identity/__init__.py": "",
    "identity/config.py": "",
    "identity/faces/__init__.py": "from identity.faces.detect import find\n",
    "identity/faces/detect.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
    "    from identity.services import x\ndef find():\n    from . import util\n",
    "identity/faces/util.py": "import identity.faces.detect\n",
    "identity/store/__init__.py": "def f():\n    from identity.app.core import App\n",
    "identity/app/__init__.py": "",
    "identity/app/core.py": "from identity import config\nfrom identity.faces import find\n",
    "identity/services/__init__.py": "from ..store import f\n",
    "cli/__init__.py": "",
    "cli/main.py": "from identity_cli import serve\nfrom identity.services import f\n",
    "cli/serve.py": "import identity_cli.main\n",
}


def write_tree(root: Path) -> Path:
    for name, source in TREE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source)
    return root


def test_circles_and_upward_imports_count_function_level_and_relative_imports_but_not_type_checking(
    tmp_path: Path,
) -> None:
    s = structure(write_tree(tmp_path))
    assert sorted(s["circles"]) == [
        ["identity.faces.detect", "identity.faces.util"],
        ["identity_cli.main", "identity_cli.serve"],
    ]
    assert s["import_circles"] == 2 and s["modules_in_circles"] == 4
    # store -> app is upward (inside a function); faces -> services sits under TYPE_CHECKING and does not count
    assert s["upward"] == ["identity.store -> identity.app.core"] and s["upward_by_layers"] == {"store -> app": 1}
    assert s["lines_per_layer"]["faces"] == 7 and s["lines_per_layer"]["cli"] == 3
    assert s["largest_modules"][0] == {"module": "identity/faces/detect.py", "lines": 5}


def test_a_wrapped_rich_table_reads_back_by_column() -> None:
    table = Table()
    for column in ("backend", "detect+embed p50", "p95", "vector+SQL p50", "p95", "vector p95: faces only"):
        table.add_column(column)
    table.add_row("sqlite", "120 ms", "180 ms", "3.9 ms", "16.8 ms", "1.3 ms")
    out = io.StringIO()
    Console(file=out, width=80).print(table)
    header, rows = table_rows(out.getvalue())
    assert header[-1] == "vector p95: faces only", out.getvalue()
    assert search_figures(out.getvalue(), 9.0) == {"store_p95_ms": 16.8, "embed_p95_ms": 180.0, "script_s": 9.0}


def test_within_noise_only_where_one_tree_spreads_over_the_difference() -> None:
    assert verdict([10.0, 12.0], [11.5, 12.5], True)["verdict"] == "within noise"
    assert verdict([10.0, 10.2], [12.0, 12.1], True)["verdict"] == "new better"
    assert verdict([10.0, 10.2], [12.0, 12.1], False)["verdict"] == "new worse"
