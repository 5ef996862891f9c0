"""Alembic environment: one chain for SQLite and Postgres.

The engine is handed in by identity.store.sql.migrate (never read from alembic.ini);
the `alembic` command line works too when IDENTITY_DATABASE_URL / IDENTITY_DATA_DIR
point at a database.
"""

from alembic import context

from identity.config import Settings
from identity.store.sql.db import make_engine
from identity.store.sql.tables import Base


def _engine_from_settings():
    settings = Settings.load()
    return make_engine(settings.sql_url, create_folder=settings.database_url is None)


config = context.config
engine = config.attributes.get("engine") or _engine_from_settings()

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
