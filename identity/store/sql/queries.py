"""Query functions over the relational schema; each takes the session as its first argument."""

from __future__ import annotations

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from identity.errors import DimensionMismatch
from identity.store.sql.models import Face, FaceStatus, Model
from identity.store.vectors.base import collection_name


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
