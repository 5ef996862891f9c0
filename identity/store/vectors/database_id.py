"""The other half of the binding: the vector store records which database it belongs to.

SQL records its vector store (store_ref); this module keeps the database's id in the
store, so a process that pairs a populated store with another (or an empty) database
is refused before it writes anything (identity.app.store_owner):

- the embedded store: ``<edge dir>/database_id``, written atomically beside ``store_id``;
- a Qdrant server: the metadata of a small collection without vectors, ``identity_deployment``;
- ``:memory:``: a store of one process, never bound.

Reading creates nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from identity.config import Settings
from identity.errors import StoreUnavailable
from identity.fsutil import fsync_dir
from identity.store.vectors.base import FACES, TEMPLATES
from identity.store.vectors.store_ref import MEMORY, STORE_ID_FILE

DATABASE_ID_FILE = "database_id"
META_COLLECTION = "identity_deployment"
META_KEY = "database_id"


def read_database_id(settings: Settings, client: Any = None) -> str | None:
    """The id of the database this store belongs to; None when it records none (fresh, or from before).

    `client`: an open qdrant-client to use for a server store (tests: local mode), left open.
    """
    if settings.qdrant_url == MEMORY:
        return None
    if settings.qdrant_url:
        return _server_database_id(settings, client)
    path = _edge_dir(settings) / DATABASE_ID_FILE
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not text or len(text) > 64 or not text.isalnum():
        raise StoreUnavailable(f"{path} is corrupt ({text[:40]!r}): it should hold the id of its database")
    return text


def write_database_id(settings: Settings, database_id: str, client: Any = None) -> None:
    """Record the database this store belongs to (replacing any other: callers decide when that is right)."""
    if settings.qdrant_url == MEMORY:
        return
    if settings.qdrant_url:
        _write_server_database_id(settings, database_id, client)
        return
    edge_dir = _edge_dir(settings)
    edge_dir.mkdir(parents=True, exist_ok=True)
    tmp = edge_dir / f"{DATABASE_ID_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        handle.write(database_id + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, edge_dir / DATABASE_ID_FILE)  # a reader sees the old id or the new one, never half
    fsync_dir(edge_dir)


def store_in_use(settings: Settings, client: Any = None) -> bool:
    """True when the store already holds a deployment's vectors (or its identity): a fresh database must not take it.

    Edge: a store id or a database id (every version that bound a database wrote the store id
    before its first vector; a collection alone, of a version before that, is not looked into:
    opening it would take the store's lock); a server: the metadata collection, or a face or
    template collection holding points.
    """
    if settings.qdrant_url == MEMORY:
        return False
    if settings.qdrant_url:
        return _server_in_use(settings, client)
    edge_dir = _edge_dir(settings)
    return (edge_dir / STORE_ID_FILE).exists() or (edge_dir / DATABASE_ID_FILE).exists()


def _edge_dir(settings: Settings) -> Path:
    return settings.edge_dir.expanduser().resolve()


def _server_database_id(settings: Settings, client: Any) -> str | None:
    from identity.store.vectors.server import server_connection

    with server_connection(settings, client) as conn:
        if not conn.call(conn.client.collection_exists, META_COLLECTION):
            return None
        metadata = conn.call(conn.client.get_collection, META_COLLECTION).config.metadata or {}
    found = metadata.get(META_KEY)
    return str(found) if found else None


def _write_server_database_id(settings: Settings, database_id: str, client: Any) -> None:
    from identity.store.vectors.server import server_connection

    with server_connection(settings, client) as conn:
        if conn.call(conn.client.collection_exists, META_COLLECTION):
            conn.call(conn.client.update_collection, META_COLLECTION, metadata={META_KEY: database_id})
        else:
            conn.call(
                conn.client.create_collection, META_COLLECTION, vectors_config={}, metadata={META_KEY: database_id}
            )


def _server_in_use(settings: Settings, client: Any) -> bool:
    from identity.store.vectors.server import server_connection

    with server_connection(settings, client) as conn:
        names = [c.name for c in conn.call(conn.client.get_collections).collections]
        if META_COLLECTION in names:
            return True
        ours = [n for n in names if n.startswith((f"{FACES}_", f"{TEMPLATES}_"))]
        return any(conn.call(conn.client.count, name).count > 0 for name in ours)
