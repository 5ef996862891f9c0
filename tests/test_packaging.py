"""The installed package holds everything the code imports."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_installed() -> None:
    """pyproject lists packages explicitly (cli/ and migrations/ are mapped): none may be forgotten."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "identity").rglob("__init__.py")}
    assert found <= listed
