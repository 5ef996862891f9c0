"""Model rows beyond those queries.py reads: by row id, all of them, and those that hold faces."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from identity.errors import DimensionMismatch
from identity.store.sql.tables import Face, Model, naive_utc, utcnow
from identity.store.vectors.base import collection_name


def get_model(session: Session, row_id: int) -> Model:
    return session.get_one(Model, row_id)


def list_models(session: Session) -> list[Model]:
    return list(session.scalars(select(Model)))


def models_with_row_ids(session: Session, row_ids: Iterable[int]) -> list[Model]:
    return list(session.scalars(select(Model).where(Model.id.in_(set(row_ids)))))


def other_models_with_faces(session: Session, model_row_id: int) -> list[Model]:
    """The models other than this one that hold face rows (kept after a re-index, for rollback), by row id."""
    return list(
        session.scalars(
            select(Model)
            .where(Model.id.in_(select(Face.model_id).distinct()), Model.id != model_row_id)
            .order_by(Model.id)
        )
    )


def records_active_model(engine: Engine) -> bool:
    """Whether the schema can say which model is active (a new store, or one from before, cannot yet)."""
    inspector = inspect(engine)
    return inspector.has_table("models") and "activated_at" in {c["name"] for c in inspector.get_columns("models")}


def split_model_id(model_id: str) -> tuple[str, str]:
    name, _, version = model_id.partition("@")
    return name, version or "1"


def find_model(session: Session, model_id: str) -> Model | None:
    name, version = split_model_id(model_id)
    return session.scalars(select(Model).where(Model.name == name, Model.version == version)).one_or_none()


def ensure_model(session: Session, model_id: str, dim: int) -> Model:
    """The model record for a pack version, created on first use; its dimension never changes."""
    model = find_model(session, model_id)
    if model is None:
        name, version = split_model_id(model_id)
        model = Model(name=name, version=version, dim=dim, collection=collection_name(model_id))
        session.add(model)
        session.flush()
    elif model.dim != dim:
        raise DimensionMismatch(f"model {model_id} is recorded with {model.dim} dimensions, the pack produces {dim}")
    return model


def active_model(session: Session, lock: bool = False) -> Model | None:
    """The store's active model: the one activated last (None in a store that never recorded one)."""
    stmt = (
        select(Model)
        .where(Model.activated_at.is_not(None))
        .order_by(Model.activated_at.desc(), Model.id.desc())
        .limit(1)
    )
    return session.scalars(stmt.with_for_update() if lock else stmt).first()


def activate_model(session: Session, model: Model) -> Model | None:
    """Make `model` the active one and return the one it replaces; the caller's transaction makes it atomic."""
    previous = active_model(session, lock=True)  # concurrent switches on Postgres queue here
    now = utcnow()
    before = previous.activated_at if previous is not None else None  # set on every model active_model() returns
    if before is not None and naive_utc(before) >= naive_utc(now):
        now = before + timedelta(microseconds=1)  # a clock step back must not undo a switch
    model.activated_at = now
    session.flush()
    return previous
