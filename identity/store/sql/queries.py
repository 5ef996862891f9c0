"""Query functions over the relational schema; each takes the session as its first argument."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from identity.errors import DimensionMismatch
from identity.store.sql.models import Face, FaceStatus, Model, naive_utc, utcnow
from identity.store.vectors.base import collection_name


def holds_faces(session: Session) -> bool:
    """Whether any face row exists (of any model or state)."""
    return session.scalar(select(Face.id).limit(1)) is not None


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


def count_gallery_persons(session: Session, model_row_id: int) -> int:
    """Persons with at least one indexed face of this model."""
    return session.scalar(
        select(func.count(distinct(Face.person_id))).where(Face.model_id == model_row_id,
                                                            Face.status == FaceStatus.indexed)
    ) or 0


def count_indexed_faces(session: Session, model_row_id: int) -> int:
    """Faces of this model SQL says the vector store holds (search compares it with the collection's count)."""
    return session.scalar(
        select(func.count()).select_from(Face).where(Face.model_id == model_row_id, Face.status == FaceStatus.indexed)
    ) or 0


def active_model(session: Session, lock: bool = False) -> Model | None:
    """The store's active model: the one activated last (None in a store that never recorded one)."""
    stmt = (select(Model).where(Model.activated_at.is_not(None))
            .order_by(Model.activated_at.desc(), Model.id.desc()).limit(1))
    return session.scalars(stmt.with_for_update() if lock else stmt).first()


def activate_model(session: Session, model: Model) -> Model | None:
    """Make `model` the active one and return the one it replaces; the caller's transaction makes it atomic."""
    previous = active_model(session, lock=True)  # concurrent switches on Postgres queue here
    now = utcnow()
    if previous is not None and naive_utc(previous.activated_at) >= naive_utc(now):
        now = previous.activated_at + timedelta(microseconds=1)  # a clock step back must not undo a switch
    model.activated_at = now
    session.flush()
    return previous


def indexed_faces_by_model(session: Session) -> dict[int, int]:
    """Indexed faces per model row id."""
    rows = session.execute(select(Face.model_id, func.count()).where(Face.status == FaceStatus.indexed)
                           .group_by(Face.model_id))
    return {model_id: count for model_id, count in rows}
