"""The one place the store's schema changes: the Alembic chain, applied by policy.

- A store with no schema yet is created at head by a command that may write (the
  README's first command enrolls into a fresh data directory), unless its vector store
  already belongs to a deployment (a fresh database must not take it: see store_owner).
- A store whose schema is older than this code is upgraded only by `identity init`;
  any other command refuses it (exit 4), so an upgrade is a deliberate step.
- `identity version` reads the revision as it is.

Creating and upgrading happen under the first-use lock, so two commands started at once
on a fresh database do not both run the migrations.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from identity.errors import SchemaOutdated
from identity.store.sql.db import Engine
from identity.store.sql.first_use import first_use_lock
from identity.store.sql.migrate import current_revision, head_revision, upgrade


class SchemaPolicy(StrEnum):
    create = "create"  # create a missing schema; refuse an older one
    upgrade = "upgrade"  # create or upgrade (identity init)
    as_is = "as is"  # neither (identity version)


CREATE, UPGRADE, AS_IS = SchemaPolicy
POLICIES = tuple(SchemaPolicy)


def prepare_schema(engine: Engine, policy: str, before_create: Callable[[], None] | None = None) -> str | None:
    """Apply the policy; returns the revision the store had before (None: it had no schema).

    `before_create` runs (under the lock) before a missing schema is created: it may refuse.
    """
    if policy not in POLICIES:
        raise ValueError(f"schema policy {policy!r}: expected one of {', '.join(POLICIES)}")
    before = current_revision(engine)
    head = head_revision()
    if policy == AS_IS or before == head:
        return before
    with first_use_lock(engine):
        before = current_revision(engine)  # another process may have created it while this one waited
        if before == head:
            return before
        if before is not None and policy != UPGRADE:
            raise SchemaOutdated(
                f"the store's schema is at revision {before} and this version of identity needs "
                f"{head}: run `identity init` to upgrade it",
                revision=before,
                needed=head,
            )
        if before is None and before_create is not None:
            before_create()
        upgrade(engine)
    return before
