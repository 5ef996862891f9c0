"""Faces that searches returned as unknown, kept for clustering only where a setting says so.

They are biometric data of people who are not enrolled, so keeping them is off by
default (settings `review.keep_unknown_faces`), and each is kept for
`review.unknown_retention_days` at most: then its row and vector are erased, and the
collection's files purged as erasure does. The row is written before the vector, so a
crash between the two leaves a row that expires, never a vector nobody knows of.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from identity.app.core import App
from identity.faces import DetectedFace, ImageFaces
from identity.serialize import to_json
from identity.services.records.thumbnails import encode_thumbnail
from identity.store.sql.db import transaction
from identity.store.sql.tables import UnknownFace
from identity.store.sql.unknown_faces import delete_unknown_faces, expired_unknown_faces
from identity.store.vectors import VectorPoint

NO_PERSON = uuid.UUID(int=0)  # the collection's person_id payload: these faces belong to nobody yet


def keep_unknown(
    app: App, found: ImageFaces, search_id: str, faces: Sequence[tuple[int, DetectedFace]]
) -> list[uuid.UUID]:
    """Keep these faces of a search (index, face) for clustering; returns their ids."""
    dep = app.deployment()
    if dep.unknown is None or not faces:
        return []
    now = datetime.now(UTC)
    expires = now + timedelta(days=dep.settings.review.unknown_retention_days)
    rows = [
        UnknownFace(
            id=uuid.uuid4(),
            model_id=dep.model.id,
            search_id=uuid.UUID(search_id),
            face_index=index,
            image_sha256=found.sha256,
            source_path=found.path,
            bbox=[round(float(v), 1) for v in face.bbox],
            quality=to_json(face.quality),
            thumbnail=encode_thumbnail(face.crop),
            created_at=now,
            expires_at=expires,
        )
        for index, face in faces
    ]
    with transaction(app.sessions) as session:
        session.add_all(rows)
    dep.unknown.upsert([VectorPoint(row.id, NO_PERSON, face.embedding) for row, (_, face) in zip(rows, faces)])
    return [row.id for row in rows]


def expire_unknown(app: App, now: datetime | None = None) -> dict[str, Any]:
    """Erase the kept faces whose retention ran out, this model's and others' rows alike (another
    model's vectors went with its collection's purge when it was active). Kept faces are the product's
    records, as the search log is: a search (a read) expires them without preparing the store for writes."""
    moment = now or datetime.now(UTC)
    with app.sessions() as session:
        expired = expired_unknown_faces(session, moment)
    if not expired:
        return {"expired": 0}
    return {"expired": len(expired), **erase_unknown(app, [face_id for face_id, _ in expired])}


def erase_unknown(app: App, ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    """Erase kept faces: rows, vectors, and the collection's files rebuilt without them (records, as expire_unknown)."""
    dep = app.deployment()
    if not ids:
        return {"rows": 0}
    with transaction(app.sessions) as session:
        rows = delete_unknown_faces(session, ids)
    index = dep.unknown_faces()
    index.delete(list(ids))
    return {"rows": rows, "vectors": index.purge()}
