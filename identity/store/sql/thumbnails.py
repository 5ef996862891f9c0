"""Stored face thumbnails: enrolled faces' (face_thumbnails) and searched faces' (search_thumbnails)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.orm import Session

from identity.store.sql.db import rowcount
from identity.store.sql.tables import Face, FaceThumbnail, Image, SearchThumbnail


def face_thumbnails_by_id(session: Session, face_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    wanted = list(set(face_ids))
    if not wanted:
        return {}
    rows = session.execute(select(FaceThumbnail.face_id, FaceThumbnail.jpeg).where(FaceThumbnail.face_id.in_(wanted)))
    return {row.face_id: row.jpeg for row in rows}


def search_thumbnails_by_key(
    session: Session, keys: Iterable[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], bytes]:
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = session.execute(
        select(SearchThumbnail.search_id, SearchThumbnail.face_index, SearchThumbnail.jpeg).where(
            tuple_(SearchThumbnail.search_id, SearchThumbnail.face_index).in_(wanted)
        )
    )
    return {(row.search_id, row.face_index): row.jpeg for row in rows}


def faces_without_thumbnail(session: Session, limit: int | None = None) -> list[tuple[Face, Image]]:
    """Faces (with their image) that have no stored thumbnail, grouped by image so each photo is read once."""
    stmt = (
        select(Face, Image)
        .join(Image, Image.id == Face.image_id)
        .outerjoin(FaceThumbnail, FaceThumbnail.face_id == Face.id)
        .where(FaceThumbnail.face_id.is_(None))
        .order_by(Face.image_id, Face.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [(face, image) for face, image in session.execute(stmt).tuples()]


def count_faces_without_thumbnail(session: Session) -> int:
    stmt = (
        select(func.count())
        .select_from(Face)
        .outerjoin(FaceThumbnail, FaceThumbnail.face_id == Face.id)
        .where(FaceThumbnail.face_id.is_(None))
    )
    return int(session.scalar(stmt) or 0)


def delete_expired_search_thumbnails(session: Session, now: datetime) -> int:
    return rowcount(session.execute(delete(SearchThumbnail).where(SearchThumbnail.expires_at <= now)))


def delete_search_thumbnails(session: Session, search_ids: Iterable[uuid.UUID]) -> int:
    wanted = list(set(search_ids))
    if not wanted:
        return 0
    return rowcount(session.execute(delete(SearchThumbnail).where(SearchThumbnail.search_id.in_(wanted))))
