"""One enrolled face by its id (GET /v1/faces/{id}): its person, photo, box, landmarks, quality and state.

The id is the one `identity audit` lists and search hits name (`faces[].face_id`); its thumbnail is
identity.services.records.thumbnails.face_thumbnails. Never a vector.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

from identity.app.core import App
from identity.errors import NotFound
from identity.services.records.thumbnails import face_thumbnails
from identity.store.sql.faces import get_face
from identity.store.sql.persons import PersonRecord, person_record
from identity.store.sql.tables import UNKNOWN_DETECTOR, FaceStatus, Image, Model, Person


@dataclass(frozen=True)
class FaceRecord:
    face_id: str
    person: PersonRecord
    model: str
    status: FaceStatus
    rejection: str | None
    source_path: str
    image_sha256: str
    bbox: list[float]
    landmarks: list[Any]
    det_score: float
    iod_px: float | None
    blur: float | None
    yaw_deg: float | None
    roll_deg: float | None
    detector: str  # the detection stage that found it ("unknown": recorded before faces kept it)
    enrolled_at: str | None
    thumbnail: bool  # whether GET /v1/faces/{id}/thumbnail has a JPEG of it


def face_record(app: App, ref: str, has_thumbnail: bool | None = None) -> FaceRecord:
    """The face `ref` (a uuid); NotFound for anything else."""
    face_id = _face_uuid(ref)
    with app.sessions() as session:
        face = get_face(session, face_id)
        if face is None:
            raise NotFound(f"no face with id {ref!r}")
        image = session.get_one(Image, face.image_id)
        person = session.get_one(Person, face.person_id)
        model = session.get_one(Model, face.model_id)
        record = FaceRecord(
            face_id=str(face.id),
            person=person_record(person),
            model=model.model_id,
            status=face.status,
            rejection=face.rejection,
            source_path=image.source_path,
            image_sha256=image.sha256,
            bbox=face.bbox,
            landmarks=face.landmarks,
            det_score=face.det_score,
            iod_px=face.iod_px,
            blur=face.blur,
            yaw_deg=face.yaw_deg,
            roll_deg=face.roll_deg,
            detector=face.detector or UNKNOWN_DETECTOR,
            enrolled_at=face.created_at.isoformat() if face.created_at else None,
            thumbnail=False,
        )
    kept = bool(face_thumbnails(app, [face_id])) if has_thumbnail is None else has_thumbnail
    return dataclasses.replace(record, thumbnail=kept)


def face_thumbnail(app: App, ref: str) -> bytes:
    """The face's stored JPEG; NotFound for an unknown face or one without a thumbnail."""
    face_id = _face_uuid(ref)
    found = face_thumbnails(app, [face_id]).get(str(face_id))
    if found is None:
        face_record(app, ref, has_thumbnail=False)  # NotFound for an unknown face
        raise NotFound(f"face {ref} has no stored thumbnail (identity doctor --repair cuts the missing ones)")
    return found


def _face_uuid(ref: str) -> uuid.UUID:
    try:
        return uuid.UUID(ref)
    except ValueError:
        raise NotFound(f"{ref!r} is not a face id (a uuid, as `identity audit` lists them)") from None
