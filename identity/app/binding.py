"""One deployment, one vector store: SQL records which store holds the vectors and refuses any other.

Without this, a second process pointed at the same database with another data
directory writes vectors into a second embedded store while SQL marks them indexed:
each store then misses the other's faces and searches answer `unknown`. The first
process that opens a database with vectors binds it (a database from an older version
too); `identity init --rebind` moves the binding when the vectors really moved.

The binding works both ways: the store records the database's id (identity.app.store_owner),
so a populated store is never taken by another or an empty database. Binding runs under
the first-use lock, so two processes binding a fresh deployment at once agree on one store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from identity.app.actor import resolve_actor
from identity.app.store_owner import check_store_owner
from identity.config import Settings
from identity.errors import ConfigError, StoreMismatch
from identity.store.sql.audit_events import record_audit_event
from identity.store.sql.db import Session, transaction
from identity.store.sql.deployment import bound_vector_store, database_id, deployment_record, existing_record
from identity.store.sql.errors import IntegrityError
from identity.store.sql.faces import holds_faces
from identity.store.sql.first_use import first_use_lock
from identity.store.sql.tables import utcnow
from identity.store.vectors.database_id import write_database_id
from identity.store.vectors.store_ref import StoreRef, create_store_id, read_store_id, vector_store_ref

if TYPE_CHECKING:
    from identity.app.core import App

REPAIR = "if the vectors really moved, run `identity init --rebind`, then `identity doctor --repair`"


def bind_vector_store(app: App) -> StoreRef:
    """The store this process uses, checked against (or recorded as) the deployment's binding.

    Raises StoreMismatch (exit 4) when the database is bound to another store. Call it
    before opening any collection, so a refused process creates nothing.
    """
    if vector_store_ref(app.settings).kind == "memory":
        return vector_store_ref(app.settings)
    with first_use_lock(app.engine):  # read the store's id inside: another process may be giving it one
        recorded = _check_owner(app)
        return _bind_once(app, vector_store_ref(app.settings), recorded)


def check_vector_store(app: App) -> StoreRef:
    """bind_vector_store for a read: the same refusals, and nothing written (an unbound store stays unbound,
    a moved data directory is followed, not recorded, until a command that writes)."""
    here = vector_store_ref(app.settings)
    if here.kind == "memory":
        return here
    with app.sessions() as session:
        record = existing_record(session)
        check_store_owner(
            app.settings,
            database_id(record) if record else None,
            bound=bool(record and record.vector_store),
            holds_faces=holds_faces(session),
        )
    if record is None or record.vector_store is None:
        return here
    bound = StoreRef.parse(record.vector_store)
    if not bound.same_store(here):
        raise _mismatch(bound, here, app.settings)
    if bound.location != here.location and _store_id_at(bound.location) == here.store_id:
        raise _copy(bound, here)
    return here


def rebind_vector_store(app: App, actor: str | None = None) -> str | None:
    """Bind the deployment to this process's store whatever it was bound to (audited); the store it left.

    None when it was bound to no store yet, or to this one already (then nothing changes).
    """
    here = create_store_id(app.settings)
    if here.kind == "memory":
        raise ConfigError("qdrant_url ':memory:' is a store of one process: there is nothing to bind to")
    with transaction(app.sessions) as session:
        record = deployment_record(session, for_update=True)
        ours, before = database_id(record), record.vector_store
        if before != here.uri:
            record.vector_store, record.bound_at = here.uri, utcnow()
            record_audit_event(
                session, resolve_actor(actor), "rebind_vector_store", details={"from": before, "to": here.uri}
            )
    # After the commit: the store changes hands (this is the override); a crash before this line leaves a
    # store bound to this database that records no database, which the next binding completes.
    write_database_id(app.settings, ours)
    return None if before == here.uri else before


def still_bound(app: App, store: StoreRef) -> bool:
    """False once `identity init --rebind` moved the deployment away from `store` (a process-local one stays)."""
    if store.kind == "memory":
        return True
    with app.sessions() as session:
        bound = bound_vector_store(session)
    return bound is not None and StoreRef.parse(bound).same_store(store)


def _check_owner(app: App) -> str | None:
    """Refuse a store of another (or an empty) database; else commit the deployment record before the store
    records its id, so a crash between the two leaves a store that names a database which exists."""
    with app.sessions() as session:
        record = existing_record(session)
        recorded = check_store_owner(
            app.settings,
            database_id(record) if record else None,
            bound=bool(record and record.vector_store),
            holds_faces=holds_faces(session),
        )
    if record is None:
        try:
            with transaction(app.sessions) as session:
                deployment_record(session)
        except IntegrityError:  # created at this moment by a command that does not bind (an erasure): the same
            pass
    return recorded


def _bind_once(app: App, here: StoreRef, recorded: str | None) -> StoreRef:
    with transaction(app.sessions) as session:
        return _bind(session, app.settings, here, recorded)


def _bind(session: Session, settings: Settings, here: StoreRef, recorded: str | None) -> StoreRef:
    """`recorded`: the database id the store records (checked to be this database's, or None)."""
    record = deployment_record(session, for_update=True)
    if record.vector_store is None:
        here = create_store_id(settings)
        write_database_id(settings, database_id(record))
        record.vector_store, record.bound_at = here.uri, utcnow()
        return here
    bound = StoreRef.parse(record.vector_store)
    if not bound.same_store(here):
        raise _mismatch(bound, here, settings)
    if bound.location != here.location:
        if _store_id_at(bound.location) == here.store_id:
            raise _copy(bound, here)
        record.vector_store = here.uri  # the data directory moved (or is mounted elsewhere): follow it
    if recorded is None:  # a store from before the binding both ways, bound to this database: record it
        write_database_id(settings, database_id(record))
    return here


def _store_id_at(location: str) -> str | None:
    try:
        return read_store_id(Path(location))
    except OSError:  # a path of another machine or container
        return None


def _copy(bound: StoreRef, here: StoreRef) -> StoreMismatch:
    return StoreMismatch(
        f"vector store {here.store_id} exists twice, at {bound.location} (bound) and {here.location}: "
        f"a copy would split the deployment's vectors; use the bound one, or {REPAIR}",
        bound=bound.uri,
        this_process=here.uri,
    )


def _mismatch(bound: StoreRef, here: StoreRef, settings: Settings) -> StoreMismatch:
    fresh = here.kind == "edge" and not here.store_id
    have = f"edge:{here.location} (no vector store there yet)" if fresh else here.uri
    if bound.kind == "edge":
        fix = f"point IDENTITY_DATA_DIR at the data directory that holds {bound.location}"
        fix += "" if here.kind == "edge" else " and unset IDENTITY_QDRANT_URL"
        if settings.sql_url.startswith("postgresql"):
            fix += " (for several workers, move the deployment to a Qdrant server: IDENTITY_QDRANT_URL)"
    else:
        fix = f"set IDENTITY_QDRANT_URL={bound.location}"
    return StoreMismatch(
        f"this database is bound to vector store {bound.uri}, but this process would use {have}, which "
        f"would split the deployment's vectors: {fix}; {REPAIR}",
        bound=bound.uri,
        this_process=here.uri,
    )
