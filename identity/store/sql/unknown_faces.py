"""Kept unknown faces: rows beside the vectors of the model's `unknown_` collection."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from identity.store.sql.db import rowcount
from identity.store.sql.tables import UnknownFace


def expired_unknown_faces(session: Session, now: datetime) -> list[tuple[uuid.UUID, int]]:
    """(id, model row id) of every kept face whose retention has run out."""
    rows = session.execute(select(UnknownFace.id, UnknownFace.model_id).where(UnknownFace.expires_at <= now))
    return [(row.id, row.model_id) for row in rows]


def unknown_faces_since(session: Session, model_row_id: int, since: datetime | None = None) -> list[UnknownFace]:
    """The model's kept faces (optionally those kept at or after `since`), oldest first."""
    stmt = select(UnknownFace).where(UnknownFace.model_id == model_row_id)
    if since is not None:
        stmt = stmt.where(UnknownFace.created_at >= since)
    return list(session.scalars(stmt.order_by(UnknownFace.created_at, UnknownFace.id)))


def unknown_faces_by_id(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, UnknownFace]:
    wanted = list(set(ids))
    return (
        {row.id: row for row in session.scalars(select(UnknownFace).where(UnknownFace.id.in_(wanted)))}
        if wanted
        else {}
    )


def unknown_face_keys(session: Session) -> list[tuple[uuid.UUID, int, str]]:
    """(id, model row id, image sha256) of every kept face (few: they expire)."""
    rows = session.execute(select(UnknownFace.id, UnknownFace.model_id, UnknownFace.image_sha256))
    return [(row.id, row.model_id, row.image_sha256) for row in rows]


def delete_unknown_faces(session: Session, ids: Sequence[uuid.UUID]) -> int:
    return rowcount(session.execute(delete(UnknownFace).where(UnknownFace.id.in_(list(ids))))) if ids else 0
