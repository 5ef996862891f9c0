"""Model rows beyond those queries.py reads: by row id, all of them, and those that hold faces."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from identity.store.sql.models import Face, Model


def get_model(session: Session, row_id: int) -> Model:
    return session.get_one(Model, row_id)


def list_models(session: Session) -> list[Model]:
    return list(session.scalars(select(Model)))


def models_with_row_ids(session: Session, row_ids: Iterable[int]) -> list[Model]:
    return list(session.scalars(select(Model).where(Model.id.in_(set(row_ids)))))


def other_models_with_faces(session: Session, model_row_id: int) -> list[Model]:
    """The models other than this one that hold face rows (kept after a re-index, for rollback), by row id."""
    return list(session.scalars(select(Model).where(
        Model.id.in_(select(Face.model_id).distinct()), Model.id != model_row_id).order_by(Model.id)))


def records_active_model(engine: Engine) -> bool:
    """Whether the schema can say which model is active (a new store, or one from before, cannot yet)."""
    inspector = inspect(engine)
    return inspector.has_table("models") and "activated_at" in {c["name"] for c in inspector.get_columns("models")}
