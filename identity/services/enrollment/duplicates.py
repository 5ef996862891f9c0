"""Identical files among a command's inputs: archives hold copies, and each is worked on once.

`identity cluster DIR` and `identity search IMG...` detect, embed (and store or log) the
first path of each distinct content only; later copies are reported as duplicates of it.
(`identity enroll` finds copies as it settles each chunk: EnrollmentWriter._copies.)
Only files that share a size are read and hashed, so a folder without copies costs a stat
per file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from identity.pathnames import path_text


@dataclass(frozen=True)
class Duplicate:
    path: str  # path_text of the copy
    duplicate_of: str  # path_text of the first path with the same bytes


def unique_files(paths: Sequence[str]) -> tuple[list[str], list[Duplicate]]:
    """`paths` without the later copies of a file (same sha256), in input order, and those copies.

    A file that cannot be read is kept, so whoever loads it reports why."""
    by_size: dict[int, list[str]] = {}
    for path in paths:
        by_size.setdefault(_size(path), []).append(path)
    first: dict[str, str] = {}
    copies: dict[str, str] = {}  # copy -> first path
    for size, group in by_size.items():
        if size < 0 or len(group) < 2:
            continue
        for path in group:
            digest = _digest(path)
            if digest is not None:
                original = first.setdefault(digest, path)
                if original != path:
                    copies[path] = original
    kept = [path for path in paths if path not in copies]
    return kept, [Duplicate(path_text(path), path_text(copies[path])) for path in paths if path in copies]


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None
