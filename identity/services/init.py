"""`identity init`: create or upgrade the schema and the active model's vector collection.

Safe to run any number of times: migrations are idempotent and the model record and
collection are created only when missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from identity.services.runtime import Runtime
from identity.store.sql.migrate import current_revision, upgrade
from identity.store.sql.models import Model
from identity.store.sql.db import transaction
from identity.store.sql.queries import activate_model, active_model, ensure_model
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


def prepare_model(runtime: Runtime, model_id: str, dim: int) -> Model:
    """Bring the schema to head and return the model's record (see record_model)."""
    upgrade(runtime.engine)
    return record_model(runtime, model_id, dim)


def record_model(runtime: Runtime, model_id: str, dim: int) -> Model:
    """The model's record, created on first use; a store's first model becomes its active one."""
    with transaction(runtime.sessions) as session:
        model = ensure_model(session, model_id, dim)
        if active_model(session) is None:
            activate_model(session, model)
        return model


def initialize(runtime: Runtime, model_id: str, dim: int) -> InitReport:
    before = current_revision(runtime.engine)
    model = prepare_model(runtime, model_id, dim)
    with open_vector_index(runtime.settings, model_id, dim) as index:
        count = index.count()
    return InitReport(
        database=runtime.engine.url.render_as_string(hide_password=True),
        schema_before=before,
        schema_after=current_revision(runtime.engine),
        model_id=model_id,
        dim=dim,
        collection=model.collection,
        vectors=count,
        vector_engine="qdrant-edge" if runtime.settings.embedded else "qdrant-server",
    )
