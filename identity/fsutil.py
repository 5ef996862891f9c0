"""File-system durability helpers shared by the stores that write files themselves."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries, so a rename into it survives a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable_file(path: Path, what: str = "file") -> None:
    """Refuse, before any work, a path a later write would fail on: a missing or read-only folder, a folder."""
    from identity.errors import IdentityError

    path = Path(path).expanduser()
    if path.is_dir():
        raise IdentityError(f"{path}: cannot write the {what} there: it is a folder")
    parent = path.parent
    if not parent.is_dir():
        raise IdentityError(f"{path}: cannot write the {what} there: no folder {parent}")
    try:
        if path.exists():
            with path.open("a"):  # opened for writing, not truncated
                pass
        else:
            with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}."):
                pass
    except OSError as exc:
        raise IdentityError(f"{path}: cannot write the {what} there ({exc.strerror or exc})") from None
