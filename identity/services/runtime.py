"""The dependencies a service needs, built once per process from Settings.

Services take a Runtime (or its parts) as an argument; nothing here is global, so
tests build one against a real Postgres or a temporary SQLite file.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from identity.config import Settings
from identity.store.sql.db import check_connection, make_engine, session_factory


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def open(cls, settings: Settings) -> "Runtime":
        # Only the default data directory is created; a configured SQLite path must exist.
        engine = make_engine(settings.sql_url, create_folder=settings.database_url is None)
        check_connection(engine)
        return cls(settings=settings, engine=engine, sessions=session_factory(engine))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
