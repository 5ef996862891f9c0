"""One process at a time through a database's first use: creating its schema and binding its vector store.

Two commands started at once on a fresh database would otherwise both run the migrations
(Postgres: a duplicate type in pg_type; SQLite: `table ... already exists`) or both bind
(the loser sees the winner's store as another one). Postgres: a session advisory lock,
scoped to the database; SQLite: an flock on ``<database file>.lock`` beside it (0600).
An in-memory SQLite database belongs to one process: nothing to lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

# Any fixed 64-bit key: advisory locks are per database, and only this module takes this one.
ADVISORY_KEY = 0x1D3_F125_7B1D
LOCK_SUFFIX = ".lock"


@contextmanager
def first_use_lock(engine: Engine) -> Iterator[None]:
    """Held for the block; another process asking for it waits until it is released."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine):
            yield
        return
    database = engine.url.database
    if database in (None, "", ":memory:"):
        yield
        return
    with _file_lock(Path(database).with_name(Path(database).name + LOCK_SUFFIX)):
        yield


@contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
        conn.commit()
        try:
            yield
        finally:  # a session lock outlives the transaction: the pooled connection must not keep it
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
            conn.commit()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
        yield
    finally:
        os.close(fd)
