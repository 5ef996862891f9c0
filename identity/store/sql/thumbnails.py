"""Stored face thumbnails: enrolled faces' (face_thumbnails), searched faces' (search_thumbnails) and
cluster members' (cluster_members.thumbnail)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.orm import Session

from identity.store.sql.db import rowcount
from identity.store.sql.tables import ClusterMember, Face, FaceThumbnail, Image, SearchThumbnail


def face_thumbnails_by_id(session: Session, face_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    wanted = list(set(face_ids))
    if not wanted:
        return {}
    rows = session.execute(select(FaceThumbnail.face_id, FaceThumbnail.jpeg).where(FaceThumbnail.face_id.in_(wanted)))
    return {row.face_id: row.jpeg for row in rows}


def search_thumbnails_by_key(
    session: Session, keys: Iterable[tuple[uuid.UUID, int]], now: datetime
) -> dict[tuple[uuid.UUID, int], bytes]:
    """The searched faces' JPEGs still within their retention (an expired one is never shown, even before a
    search or `doctor --repair` deletes it)."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = session.execute(
        select(SearchThumbnail.search_id, SearchThumbnail.face_index, SearchThumbnail.jpeg).where(
            tuple_(SearchThumbnail.search_id, SearchThumbnail.face_index).in_(wanted),
            SearchThumbnail.expires_at > now,
        )
    )
    return {(row.search_id, row.face_index): row.jpeg for row in rows}


def faces_without_thumbnail(
    session: Session, limit: int, after: tuple[uuid.UUID, uuid.UUID] | None = None
) -> list[tuple[Face, Image]]:
    """Faces (with their image) that have no stored thumbnail, in (image id, face id) order so each photo is
    read once; `after` (the last pair of the previous page) pages on past faces that stayed without."""
    stmt = (
        select(Face, Image)
        .join(Image, Image.id == Face.image_id)
        .outerjoin(FaceThumbnail, FaceThumbnail.face_id == Face.id)
        .where(FaceThumbnail.face_id.is_(None))
        .order_by(Face.image_id, Face.id)
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(tuple_(Face.image_id, Face.id) > tuple_(*after))
    return [(face, image) for face, image in session.execute(stmt)]


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


def cluster_member_thumbnails(session: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
    """JPEGs stored with cluster members, by (cluster id, face key); members without one are left out."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = session.execute(
        select(ClusterMember.cluster_id, ClusterMember.face_key, ClusterMember.thumbnail).where(
            tuple_(ClusterMember.cluster_id, ClusterMember.face_key).in_(wanted), ClusterMember.thumbnail.is_not(None)
        )
    )
    return {(row.cluster_id, row.face_key): row.thumbnail for row in rows}
