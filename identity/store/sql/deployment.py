"""The deployment record: one row that says which vector store this database is bound to.

It also holds the deployment's erasure key (see models.DeploymentRecord).
"""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from identity.store.sql.models import DeploymentRecord

RECORD_ID = 1


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
