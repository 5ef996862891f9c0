"""Engines and sessions: one engine per process, sessions opened in one place.

Connection problems become one-line StoreUnavailable / ConfigError messages that
name the (password-masked) URL, so the CLI never shows a driver traceback.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from identity.config import mask_url
from identity.errors import ConfigError, StoreUnavailable

SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def make_engine(url: str, connect_timeout: int = 5) -> Engine:
    """An engine for a SQLite or Postgres URL; raises ConfigError on a malformed URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"malformed database URL {mask_url(url)!r} (expected e.g. postgresql://user@host:5432/db)") from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ConfigError(f"unsupported database {parsed.get_backend_name()!r} in {mask_url(url)}: use sqlite or postgresql")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = _create(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 defaults to psycopg 3; we ship psycopg2-binary.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return _create(parsed, pool_pre_ping=True, connect_args={"connect_timeout": connect_timeout})


def _create(url: str | URL, **kwargs: object) -> Engine:
    try:
        return create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(f"database URL {mask_url(str(url))}: {exc}") from None


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite;
    # secure_delete zeroes deleted rows, so an erased person's bytes do not linger in free space.
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


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
        raise StoreUnavailable(f"cannot reach database {engine.url.render_as_string(hide_password=True)}: {reason}") from None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session
