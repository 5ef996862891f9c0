"""Every benchmark still starts: `python benchmarks/X.py --help` exits 0 with its usage, so a module that moves
under a benchmark's imports breaks CI rather than the next person who runs it.

A file without a `__main__` block is a helper module of the benchmarks (e.g. http_abuse's rows); it must import.
All run at once in threads (each is a process that mostly waits on imports), one result per benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
FILES = sorted(BENCHMARKS.glob("*.py"))
TIMEOUT_S = 180  # torch and the API stack load in a few seconds; CI's two cores may be busy


def is_script(path: Path) -> bool:
    return 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")


def command(path: Path) -> list[str]:
    if is_script(path):
        return [sys.executable, str(path), "--help"]
    return [sys.executable, "-c", f"import {path.stem}"]


def run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(path), cwd=BENCHMARKS, capture_output=True, text=True, timeout=TIMEOUT_S, env=_environment()
    )


def _environment() -> dict[str, str]:
    # a helper module is imported as the scripts import it: from their own folder
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")]))}


@cache
def results() -> dict[Path, subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=max(4, os.cpu_count() or 1)) as pool:
        return dict(zip(FILES, pool.map(run, FILES)))


def test_there_are_benchmarks() -> None:
    assert sum(map(is_script, FILES)) > 10, BENCHMARKS


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_benchmark_starts(path: Path) -> None:
    done = results()[path]
    assert done.returncode == 0, done.stderr[-3000:]
    if is_script(path):
        assert done.stdout.startswith(f"usage: {path.name}"), done.stdout[:500]


def test_a_broken_benchmark_fails(tmp_path: Path) -> None:
    """The check can fail: a script whose import moved away exits non-zero."""
    broken = tmp_path / "moved.py"
    broken.write_text('import identity.no_such_module\nif __name__ == "__main__":\n    pass\n', encoding="utf-8")
    done = run(broken)
    assert done.returncode != 0 and "No module named 'identity.no_such_module'" in done.stderr
