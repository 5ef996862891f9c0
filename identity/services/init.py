"""`identity init`: create or upgrade the schema and the active model's vector collection.

Safe to run any number of times: migrations are idempotent and the model record and
collection are created only when missing. It binds a new deployment to its vector
store, and with `rebind` moves that binding (see identity.app.binding). The caller
opens the Runtime with the upgrade policy (identity.app.schema), the only one that
upgrades an older store.
"""

from __future__ import annotations

from dataclasses import dataclass

from identity.app.binding import bind_vector_store, rebind_vector_store
from identity.app.registry import record_model
from identity.app.runtime import Runtime
from identity.store.sql.migrate import current_revision
from identity.store.vectors import open_vector_index


@dataclass(frozen=True)
class InitReport:
    database: str
    schema_before: str | None
    schema_after: str | None
    model_id: str
    dim: int
    collection: str
    vectors: int
    vector_engine: str
    vector_store: str  # the store this deployment is bound to (see identity.app.binding)
    rebound_from: str | None = None  # with --rebind: the store it was bound to before


def initialize(runtime: Runtime, model_id: str, dim: int, rebind: bool = False,
               actor: str | None = None) -> InitReport:
    """`rebind`: bind the deployment to this process's vector store, whatever it was bound to (audited)."""
    rebound_from = rebind_vector_store(runtime, actor) if rebind else None
    store = bind_vector_store(runtime)
    model = record_model(runtime, model_id, dim)
    with open_vector_index(runtime.settings, model_id, dim) as index:
        count = index.count()
    return InitReport(
        database=runtime.engine.url.render_as_string(hide_password=True),
        schema_before=runtime.schema_before,
        schema_after=current_revision(runtime.engine),
        model_id=model_id,
        dim=dim,
        collection=model.collection,
        vectors=count,
        vector_engine="qdrant-edge" if runtime.settings.embedded else "qdrant-server",
        vector_store=store.uri,
        rebound_from=rebound_from,
    )
