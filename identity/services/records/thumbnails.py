"""Stored face thumbnails: what every page and route draws a face from, never the source photo.

An enrolled face's thumbnail is its aligned crop, written with the face (and back-filled from the
photo by `identity doctor --repair` for faces enrolled before they were kept). A searched face's
is kept with its search-log row for `match` decisions and `unknown` ones close to the threshold
(settings review.keep_search_thumbnails), for review.search_thumbnail_retention_days; erasing a
person the search returned erases it (identity.store.sql.erasure).
"""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from PIL import Image as PILImage

from identity.app.core import App
from identity.errors import ImageError
from identity.faces import load_image
from identity.pathnames import fs_path
from identity.store.sql.db import transaction
from identity.store.sql.tables import Face, FaceThumbnail, SearchThumbnail
from identity.store.sql.thumbnails import (
    count_faces_without_thumbnail,
    delete_expired_search_thumbnails,
    face_thumbnails_by_id,
    faces_without_thumbnail,
    search_thumbnails_by_key,
)

THUMB_QUALITY = 85
THUMB_PX = 112  # a back-filled thumbnail's side: the aligned crop's size
MARGIN = 0.1  # context around a back-filled face box, as a share of its size
BACKFILL_CHUNK = 500


def encode_thumbnail(crop: np.ndarray) -> bytes | None:
    """An RGB crop as a small JPEG; None for an empty crop (a face analysed without one)."""
    if crop.size == 0:
        return None
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(crop)).save(buffer, format="JPEG", quality=THUMB_QUALITY)
    return buffer.getvalue()


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def face_thumbnail_rows(faces: Iterable[tuple[Face, np.ndarray]]) -> list[FaceThumbnail]:
    """The thumbnail rows of enrolled faces (row, aligned crop); faces without a crop get none."""
    rows = []
    for face, crop in faces:
        jpeg = encode_thumbnail(crop)
        if jpeg is not None:
            rows.append(FaceThumbnail(face_id=face.id, jpeg=jpeg))
    return rows


def search_thumbnail_rows(
    app: App, search_id: uuid.UUID, crops: Sequence[tuple[int, np.ndarray]], now: datetime | None = None
) -> list[SearchThumbnail]:
    """The thumbnail rows of searched faces (face index, aligned crop), when settings keep them."""
    review = app.settings.review
    if not review.keep_search_thumbnails:
        return []
    moment = now or datetime.now(UTC)
    expires = moment + timedelta(days=review.search_thumbnail_retention_days)
    rows = []
    for index, crop in crops:
        jpeg = encode_thumbnail(crop)
        if jpeg is not None:
            rows.append(
                SearchThumbnail(search_id=search_id, face_index=index, jpeg=jpeg, created_at=moment, expires_at=expires)
            )
    return rows


def face_thumbnails(app: App, face_ids: Iterable[str | uuid.UUID]) -> dict[str, bytes]:
    """JPEGs of enrolled faces by face id (as a string); faces without one are left out."""
    with app.sessions() as session:
        found = face_thumbnails_by_id(session, {uuid.UUID(str(f)) for f in face_ids})
    return {str(face_id): jpeg for face_id, jpeg in found.items()}


def search_thumbnails(
    app: App, keys: Iterable[tuple[str | uuid.UUID, int]], now: datetime | None = None
) -> dict[tuple[str, int], bytes]:
    """JPEGs of searched faces by (search id as a string, face index); those not kept, or past their
    retention, are left out."""
    with app.sessions() as session:
        wanted = {(uuid.UUID(str(s)), int(i)) for s, i in keys}
        found = search_thumbnails_by_key(session, wanted, now or datetime.now(UTC))
    return {(str(search_id), index): jpeg for (search_id, index), jpeg in found.items()}


def expire_search_thumbnails(app: App, now: datetime | None = None) -> int:
    """Erase the searched faces' thumbnails whose retention ran out; returns how many."""
    with transaction(app.sessions) as session:
        return delete_expired_search_thumbnails(session, now or datetime.now(UTC))


def missing_face_thumbnails(app: App) -> int:
    with app.sessions() as session:
        return count_faces_without_thumbnail(session)


def backfill_face_thumbnails(app: App) -> int:
    """Cut a thumbnail from the photo for every enrolled face without one; returns how many were stored.

    Faces whose photo is gone or unreadable are left without (counted again by the next doctor run)."""
    stored, after = 0, None
    while True:
        with app.sessions() as session:
            todo = faces_without_thumbnail(session, BACKFILL_CHUNK, after)
        if not todo:
            return stored
        rows, photo, loaded = [], None, None
        for face, image in todo:
            if loaded != image.id:  # in image order: each photo is decoded once
                photo, loaded = _photo(image.source_path), image.id
            jpeg = _box_thumbnail(photo, face.bbox) if photo is not None else None
            if jpeg is not None:
                rows.append(FaceThumbnail(face_id=face.id, jpeg=jpeg))
        with transaction(app.sessions) as session:
            session.add_all(rows)
        stored += len(rows)
        after = (todo[-1][1].id, todo[-1][0].id)


def _photo(source_path: str) -> PILImage.Image | None:
    try:
        return PILImage.fromarray(load_image(fs_path(source_path)).rgb)
    except ImageError:
        return None


def _box_thumbnail(photo: PILImage.Image, bbox: list[float]) -> bytes | None:
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
    box = (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(photo.width, int(x2 + mx)), min(photo.height, int(y2 + my)))
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    crop = photo.crop(box)
    crop.thumbnail((THUMB_PX, THUMB_PX))
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=THUMB_QUALITY)
    return buffer.getvalue()
