"""Free disk space for the embedded vector store, checked before it is opened and before each write.

Qdrant Edge maps its files into memory and grows them in 32 MB steps as sparse files (the WAL
segments, the vector chunks, the payload pages): a 4-face store is ~275 MB apparent and under
1 MB on disk. A write into a page the file system cannot supply is not an error the engine can
return: the process dies of SIGBUS (exit 135), with nothing said. So before opening the store
and before each chunk of writes we ask for every byte its files may still claim (apparent size
minus allocated blocks) plus one growth step per kind of file and a margin, and refuse in one
line (NoSpace, exit 4) below that. With `vectors.preallocate` on, the files' blocks are
allocated first (posix_fallocate), so the need shrinks to the growth steps and the margin.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from identity.errors import NoSpace

MB = 1024 * 1024
GROWTH_STEP = 32 * MB  # the engine grows its WAL, vector and payload files by this much at a time
FILE_KINDS = ("wal", "vectors", "payload")  # the files that grow as points are written
MARGIN = 16 * MB  # indexes, the lock and config files, SQLite beside them
SET_ASIDE = ".damaged-"  # shards doctor set aside (identity.services.maintenance.integrity): never written again


def unallocated_bytes(root: Path) -> int:
    """Bytes the store's sparse files may still claim from the disk: apparent size minus allocated blocks."""
    total = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if SET_ASIDE not in d]
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:  # a file the engine removed while we walked
                continue
            total += max(0, st.st_size - st.st_blocks * 512)
    return total


def required_bytes(unallocated: int) -> int:
    """Free space the store needs to be opened or written: what its files may claim plus one growth of each kind."""
    return unallocated + len(FILE_KINDS) * GROWTH_STEP + MARGIN


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding `path` (or its nearest parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def preallocate(root: Path) -> None:
    """Give every sparse file of the store its disk blocks now (posix_fallocate), so later writes within the
    files' current size cannot fault; NoSpace when the disk cannot hold them."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if SET_ASIDE not in d]
        for name in files:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
                if st.st_size > st.st_blocks * 512:
                    with open(path, "r+b") as handle:
                        os.posix_fallocate(handle.fileno(), 0, st.st_size)
            except FileNotFoundError:  # a file the engine removed while we walked
                continue
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                raise NoSpace(
                    f"not enough free disk space to preallocate the vector store {root} "
                    f"(IDENTITY_VECTORS__PREALLOCATE): {free_bytes(root) / MB:.0f} MB free, "
                    f"{unallocated_bytes(root) / MB:.0f} MB still to allocate: free some space or move the "
                    "data directory (IDENTITY_DATA_DIR) to a larger disk",
                    path=str(root),
                ) from None


def ensure_space(root: Path, allocate: bool) -> None:
    """Before opening or writing the store: allocate its files first where settings ask, then check_space."""
    if allocate and root.exists():
        preallocate(root)
    check_space(root)


def check_space(root: Path) -> None:
    """Raise NoSpace naming the directory, the free and the needed bytes when the store could not grow safely."""
    free = free_bytes(root)
    needed = required_bytes(unallocated_bytes(root) if root.exists() else 0)
    if free < needed:
        raise NoSpace(
            f"not enough free disk space for the vector store {root}: {free / MB:.0f} MB free, {needed / MB:.0f} MB "
            f"needed (its sparse files may still claim {(needed - len(FILE_KINDS) * GROWTH_STEP - MARGIN) / MB:.0f}"
            f" MB, "
            f"plus {len(FILE_KINDS)} growth steps of {GROWTH_STEP // MB} MB and a margin): free some space or move "
            "the data directory (IDENTITY_DATA_DIR) to a larger disk",
            path=str(root),
            free_bytes=free,
            needed_bytes=needed,
        )
