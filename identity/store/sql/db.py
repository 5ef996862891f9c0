"""Engines and sessions: one engine per process, sessions opened in one place.

Connection problems become one-line StoreUnavailable / ConfigError messages that
name the (password-masked) URL, so the CLI never shows a driver traceback.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias, cast

from sqlalchemy import Engine as Engine  # re-exported: see SessionFactory below
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, CursorResult, ExceptionContext, Result, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session as Session  # re-exported: see SessionFactory below
from sqlalchemy.orm import sessionmaker

from identity.config import mask_url
from identity.errors import ConfigError, StoreDamaged, StoreUnavailable

# Services type their hints with Engine, Session and SessionFactory from here: the services package
# imports no sqlalchemy itself (tests/test_layers.py).
SessionFactory: TypeAlias = sessionmaker[Session]

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
POSTGRES_ALIAS = "postgres"  # what Heroku, libpq docs and many tools write; SQLAlchemy 2 refuses it


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched. `Session.execute` is typed as returning a Result; for DML it runs a
    CursorResult, which is what carries the count."""
    return cast(CursorResult[Any], result).rowcount


def parse_database_url(url: str) -> URL:
    """A SQLite or Postgres URL, normalised; a ConfigError naming the masked URL when it is malformed.

    `postgres://` is taken as `postgresql://`, a bare `postgresql://` gets the driver we
    ship (SQLAlchemy 2.1 defaults to psycopg 3), and `~` in a SQLite path is expanded.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"malformed database URL {mask_url(url)!r} (expected e.g. postgresql://user@host:5432/db)"
        ) from None
    except ValueError:  # SQLAlchemy parses the port with int()
        raise ConfigError(f"database URL {mask_url(url)}: the port is not a number from 1 to 65535") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == POSTGRES_ALIAS:
        backend = "postgresql"
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigError(f"unsupported database {backend!r} in {mask_url(url)}: use sqlite or postgresql")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ConfigError(f"database URL {mask_url(url)}: port {parsed.port} is not a number from 1 to 65535")
    if backend == "postgresql":
        return parsed.set(drivername=f"postgresql+{driver or 'psycopg2'}")
    if parsed.database not in (None, "", ":memory:"):
        parsed = parsed.set(database=str(Path(parsed.database).expanduser()))
    return parsed


def make_engine(url: str, connect_timeout: int = 5, create_folder: bool = False) -> Engine:
    """An engine for a SQLite or Postgres URL; raises ConfigError on a malformed URL.

    `create_folder`: make a SQLite file's missing folder (the default data directory);
    otherwise a missing folder is a ConfigError, so a mistyped path creates nothing.
    """
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database not in (None, "", ":memory:"):
            _sqlite_folder(Path(parsed.database).parent, url, create_folder)
        engine = _create(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "handle_error", _sqlite_damage)
        return engine
    return _create(parsed, pool_pre_ping=True, connect_args={"connect_timeout": connect_timeout})


def _sqlite_folder(folder: Path, url: str, create: bool) -> None:
    if folder.is_dir():
        return
    if folder.exists():
        raise ConfigError(f"database URL {mask_url(url)}: {folder} is not a folder")
    if not create:
        raise ConfigError(f"database URL {mask_url(url)}: folder {folder} does not exist (create it first)")
    folder.mkdir(parents=True, exist_ok=True)


def _create(url: str | URL, **kwargs: object) -> Engine:
    try:
        # A failed statement's text (logged, or shown in an error) never carries the names and ids it wrote.
        return create_engine(url, json_serializer=_json_text, hide_parameters=True, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(f"database URL {mask_url(str(url))}: {exc}") from None


def _json_text(value: object) -> str:
    # Non-ASCII text as itself, not \uXXXX escapes: SQLite's JSON paths and both databases'
    # text search (person list --query) compare the stored characters.
    return json.dumps(value, ensure_ascii=False)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite;
    # secure_delete zeroes deleted rows, so an erased person's bytes do not linger in free space.
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA secure_delete=ON")
    # 32 MiB of pages per connection, not SQLite's 2 MiB: at a million faces the persons', faces' and search
    # log's index pages a search walks stay in the cache instead of being read again from the file.
    cursor.execute("PRAGMA cache_size=-32768")
    cursor.close()


WAL_SWITCH_TRIES = 600  # x 0.05 s: as long as the connection's busy timeout (30 s)


def _use_wal(cursor: Any) -> None:
    """Switch a database to WAL once (the mode is stored in the file). The switch needs the file to itself
    and SQLite answers "database is locked" at once, without its busy handler, while another connection
    holds it: two commands opening a fresh database together hit that (3 of 30 tries), so retry."""
    for _ in range(WAL_SWITCH_TRIES):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA journal_mode=WAL")  # the last try's error is the one to show


SQLITE_DAMAGE = ("malformed", "not a database", "disk i/o error")  # sqlite3 says the file itself is bad


def _sqlite_damage(context: ExceptionContext) -> None:
    """A damaged SQLite file (truncated, overwritten) as one StoreDamaged line with what to do, not a driver
    error: without the database (the truth) the vectors cannot be rebuilt, so the only fix is a backup."""
    original = context.original_exception
    reason = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    if not any(marker in reason.lower() for marker in SQLITE_DAMAGE):
        return
    database = context.engine.url.database if context.engine is not None else "the SQLite database"
    raise StoreDamaged(
        f"database {database} is damaged ({reason}): stop every process using it and restore it from a backup "
        f"(`sqlite3 {database} .recover` may save its rows), then run `identity doctor`",
        path=str(database),
        reason=reason,
    ) from None


def flush_deleted(engine: Engine) -> dict[str, object]:
    """Move committed deletions out of SQLite's WAL into the (zeroed) database pages, emptying the WAL.

    Postgres has no equivalent the application can run: deleted rows stay in the table
    files as dead tuples until VACUUM reuses the space, and in its WAL and backups.
    """
    if engine.dialect.name != "sqlite":
        return {"database": engine.dialect.name, "wal_checkpoint": "not applicable"}
    with engine.connect() as conn:
        busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    # busy: another connection still reads an older snapshot; the WAL empties at a later checkpoint.
    return {"database": "sqlite", "secure_delete": True, "wal_checkpoint": "busy" if busy else "truncated"}


def check_connection(engine: Engine) -> None:
    """Fail fast, in one line, when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreUnavailable(
            f"cannot reach database {engine.url.render_as_string(hide_password=True)}: {reason}"
        ) from None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session
