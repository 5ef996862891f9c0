"""The SQL side of the application: one engine and session factory per process, from Settings.

Runtime.open is the only place an engine is made and the schema policy
(identity.app.schema) applied. Services take a Runtime (or a Deployment built on it);
nothing here is global, so tests build one against a real Postgres or a temporary
SQLite file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from identity.config import Settings, mask_url
from identity.errors import ConfigError, NoStore
from identity.store.sql.db import (
    Engine,
    SessionFactory,
    check_connection,
    make_engine,
    parse_database_url,
    session_factory,
)
from identity.app.schema import CREATE, prepare_schema
from identity.store.sql.migrate import current_revision


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: SessionFactory
    schema_before: str | None = None  # the store's revision when opened (None: it had no schema)

    @classmethod
    def open(cls, settings: Settings, must_exist: bool = False, schema: str = CREATE) -> "Runtime":
        """`must_exist`: for commands that only read; raise NoStore rather than create a store.
        `schema`: identity.app.schema's policy (`identity init` upgrades, `identity version` reads as is)."""
        # Only the default data directory is created; a configured SQLite path must exist.
        default_dir = settings.database_url is None
        if must_exist and not _sqlite_file_exists(settings.sql_url):
            if not default_dir:
                make_engine(settings.sql_url).dispose()  # a configured folder that is missing is the clearer error
            raise _no_store(settings)
        engine = make_engine(settings.sql_url, create_folder=default_dir)
        check_connection(engine)
        try:
            if must_exist and current_revision(engine) is None:
                raise _no_store(settings)
            before = prepare_schema(engine, schema)
        except BaseException:
            engine.dispose()
            raise
        return cls(settings=settings, engine=engine, sessions=session_factory(engine), schema_before=before)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sqlite_file_exists(url: str) -> bool:
    """False for a SQLite file that is not there yet (connecting would create it); True otherwise."""
    try:
        parsed = parse_database_url(url)
    except ConfigError:  # make_engine names the malformed URL
        return True
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return True
    return Path(parsed.database).expanduser().is_file()


def _no_store(settings: Settings) -> NoStore:
    where = str(settings.data_dir) if not settings.database_url else mask_url(settings.database_url)
    return NoStore(f"no identity store at {where}: run `identity init` (or enroll)", store=where)
