"""The deployment record: one row that says which vector store this database is bound to.

It also holds the deployment's erasure key (see models.DeploymentRecord), from which the
database's id is derived: the id the vector store records to name the database it belongs
to (identity.store.vectors.database_id). Derived, not stored, so no schema change was needed,
and stable for the database's lifetime (a backup restored keeps it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from identity.store.sql.tables import DeploymentRecord

RECORD_ID = 1
# The erasure tokens hash "kind:value" (store/sql/erasure.py); this label has no colon, so no token equals the id.
DATABASE_ID_LABEL = b"database-id"


def deployment_record(session: Session, for_update: bool = False) -> DeploymentRecord:
    """The row, created with a fresh erasure key the first time it is asked for.

    `for_update` locks it until the transaction ends (Postgres), so two processes that
    bind the deployment at once do not both win.
    """
    record = session.get(DeploymentRecord, RECORD_ID, with_for_update=for_update)
    if record is None:
        record = DeploymentRecord(id=RECORD_ID, erasure_key=secrets.token_hex(32))
        session.add(record)
        session.flush()
    return record


def bound_vector_store(session: Session) -> str | None:
    """The store the deployment is bound to, read without creating the record."""
    record = session.get(DeploymentRecord, RECORD_ID)
    return record.vector_store if record else None


def existing_record(session: Session) -> DeploymentRecord | None:
    """The row if it was ever created (a database that no deployment used yet has none); creates nothing."""
    return session.get(DeploymentRecord, RECORD_ID)


def database_id(record: DeploymentRecord) -> str:
    """The database's id: a keyed hash of a fixed label, so it reveals nothing of the erasure key."""
    return hmac.new(bytes.fromhex(record.erasure_key), DATABASE_ID_LABEL, hashlib.sha256).hexdigest()[:32]
