"""The one place the store's schema changes: the Alembic chain, applied by policy.

- A store with no schema yet is created at head by a command that may write (the
  README's first command enrolls into a fresh data directory).
- A store whose schema is older than this code is upgraded only by `identity init`;
  any other command refuses it (exit 4), so an upgrade is a deliberate step.
- `identity version` reads the revision as it is.
"""

from __future__ import annotations

from identity.errors import SchemaOutdated
from identity.store.sql.db import Engine
from identity.store.sql.migrate import current_revision, head_revision, upgrade

CREATE = "create"  # create a missing schema; refuse an older one
UPGRADE = "upgrade"  # create or upgrade (identity init)
AS_IS = "as is"  # neither (identity version)
POLICIES = (CREATE, UPGRADE, AS_IS)


def prepare_schema(engine: Engine, policy: str) -> str | None:
    """Apply the policy; returns the revision the store had before (None: it had no schema)."""
    if policy not in POLICIES:
        raise ValueError(f"schema policy {policy!r}: expected one of {', '.join(POLICIES)}")
    before = current_revision(engine)
    head = head_revision()
    if policy == AS_IS or before == head:
        return before
    if before is not None and policy != UPGRADE:
        raise SchemaOutdated(f"the store's schema is at revision {before} and this version of identity needs "
                             f"{head}: run `identity init` to upgrade it", revision=before, needed=head)
    upgrade(engine)
    return before
