"""Which database a vector store belongs to, checked before either is written.

The vector store records its database's id (identity.store.vectors.database_id); SQL
records its vector store (identity.app.binding). A database that no deployment used yet
(no schema, no deployment record, or a record bound to nothing and no faces) must not take
a store that already holds a deployment's vectors: doctor would see every vector as an
orphan and delete it. Such a process is refused (StoreMismatch, exit 4) before it creates
anything.
"""

from __future__ import annotations

from identity.config import Settings, mask_url
from identity.errors import StoreMismatch
from identity.store.vectors.database_id import read_database_id, store_in_use
from identity.store.vectors.store_ref import vector_store_ref


def refuse_if_store_in_use(settings: Settings) -> None:
    """For a database with nothing in it yet: refuse when the vector store already belongs to a deployment."""
    if store_in_use(settings):
        raise foreign_store(settings, read_database_id(settings), empty_database=True)


def check_store_owner(settings: Settings, database_id: str | None, bound: bool, holds_faces: bool) -> str | None:
    """The database id the store records, once it is known to be this database's (or nobody's yet).

    `database_id`: this database's id (None: it has no deployment record); `bound`: whether
    it records a vector store; `holds_faces`: whether it has face rows (a database from a
    version before the binding, whose store records no database either).
    """
    recorded = read_database_id(settings)
    if recorded is not None and recorded != database_id:
        raise foreign_store(settings, recorded, empty_database=database_id is None)
    if recorded is None and not bound and not holds_faces and store_in_use(settings):
        raise foreign_store(settings, None, empty_database=True)
    return recorded


def foreign_store(settings: Settings, recorded: str | None, empty_database: bool) -> StoreMismatch:
    store = vector_store_ref(settings)
    where = store.location if store.kind != "qdrant" else f"the Qdrant server at {store.location}"
    database = mask_url(settings.sql_url)
    owner = f"database {recorded}" if recorded else "another database"
    what = "is empty" if empty_database else "is another one"
    fix = (
        "point IDENTITY_DATABASE_URL at the database it belongs to, or use a new data directory (IDENTITY_DATA_DIR)"
        if store.kind == "edge"
        else "point IDENTITY_DATABASE_URL at the database it belongs to, or IDENTITY_QDRANT_URL at another server"
    )
    return StoreMismatch(
        f"vector store {where} holds the vectors of {owner}, and database {database} {what}: using them together "
        f"would drop those vectors; {fix}. Nothing was changed",
        vector_store=store.uri,
        store_database_id=recorded,
        database=database,
    )
