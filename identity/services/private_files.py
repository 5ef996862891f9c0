"""The data directory is private: its files 0600, its folders 0700 (faces, names and vectors live there).

New files are private because the CLI and the server set the umask 077 at start
(`private_umask`); a data directory made before that, or copied with wider modes, is
found by `identity doctor` (`check_private_files`) and narrowed by `doctor --repair`
(`repair_private_files`). Symbolic links are neither followed nor changed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from identity.config import Settings

PRIVATE_UMASK = 0o077  # no bit for the group or others, on every file and folder this process creates
WIDER = 0o077  # a mode with any of these bits lets another local user read (or enter) the path
PATHS_SHOWN = 50  # paths listed in the report; all of them are counted and repaired


def private_umask() -> None:
    """Make every file and folder this process creates readable by its owner only."""
    os.umask(PRIVATE_UMASK)


@dataclass
class FileModeCheck:
    """Paths under the data directory that others may read: path -> its mode (octal text, as `ls` would say)."""

    wider: dict[str, str] = field(default_factory=dict)

    @property
    def problems(self) -> int:
        return len(self.wider)

    def __json__(self) -> FileModes:
        return FileModes(len(self.wider), dict(list(self.wider.items())[:PATHS_SHOWN]))


@dataclass(frozen=True)
class FileModes:
    """The check as JSON: the count, and the first PATHS_SHOWN paths with their modes (a data dir may hold
    thousands of uploads)."""

    count: int
    paths: dict[str, str]


def check_private_files(settings: Settings) -> FileModeCheck:
    """Every file (the SQLite database, the vector shards, uploads, ...) and folder under the data directory,
    and the SQLite file where it lies elsewhere, whose mode gives the group or others any access."""
    check = FileModeCheck()
    for path in _held_paths(settings):
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & WIDER:
            check.wider[str(path)] = oct(stat.S_IMODE(mode))
    return check


def repair_private_files(check: FileModeCheck) -> int:
    """Take the group's and others' bits off every path found; returns how many were changed."""
    changed = 0
    for name in check.wider:
        path = Path(name)
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue  # gone since the check (an upload removed)
        if not stat.S_ISLNK(mode):
            path.chmod(stat.S_IMODE(mode) & ~WIDER)
            changed += 1
    return changed


def _held_paths(settings: Settings) -> list[Path]:
    root = Path(settings.data_dir)
    paths = [root] if root.is_dir() else []
    for folder, dirs, files in os.walk(root):
        paths.extend(Path(folder) / name for name in dirs + files)
    database = _sqlite_file(settings.sql_url)
    if database is not None and database.exists() and root not in database.parents:
        paths.append(database)
    return paths


def _sqlite_file(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) and url != prefix + ":memory:" else None
