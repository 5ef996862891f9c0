"""Face rows: one per detected face, person, photo and model; the id is the vector's point id.

Written `pending`, then marked `indexed` once the vector store holds the vector
(ARCHITECTURE.md, "Consistency"); `rejected` ones never get a vector.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, delete, distinct, func, select, update
from sqlalchemy.orm import Session

from identity.store.sql.tables import Face, FaceStatus, Image, Person, utcnow


class FaceKey(NamedTuple):
    """Where a face row's vector lives: its id (the point id), its model (the collection) and its photo."""

    id: uuid.UUID
    model_id: int
    image_id: uuid.UUID


def get_face(session: Session, face_id: uuid.UUID) -> Face | None:
    return session.get(Face, face_id)


def add_faces(session: Session, rows: Sequence[Face]) -> None:
    """Insert new face rows, flushed so their ids and defaults are set."""
    session.add_all(rows)
    session.flush()


def mark_faces_indexed(session: Session, face_ids: Sequence[uuid.UUID]) -> None:
    """The vectors of these faces are stored: make the faces searchable."""
    if face_ids:
        session.execute(
            update(Face).where(Face.id.in_(face_ids)).values(status=FaceStatus.indexed, updated_at=utcnow())
        )


def delete_faces(session: Session, face_ids: Sequence[uuid.UUID]) -> None:
    # synchronize_session=False: callers hold these rows as ids (or columns), not as loaded objects to update.
    session.execute(delete(Face).where(Face.id.in_(face_ids)).execution_options(synchronize_session=False))


def reassign_faces(session: Session, face_ids: Sequence[uuid.UUID], person_id: uuid.UUID) -> None:
    session.execute(update(Face).where(Face.id.in_(face_ids)).values(person_id=person_id))


def reassign_person_faces(session: Session, from_person: uuid.UUID, to_person: uuid.UUID) -> None:
    """Every face of one person becomes another's (a merge of two records of one person)."""
    session.execute(update(Face).where(Face.person_id == from_person).values(person_id=to_person))


def face_keys_of_person(session: Session, person_id: uuid.UUID) -> list[FaceKey]:
    return _face_keys(session, Face.person_id == person_id)


def face_keys_of_photo(session: Session, image_id: uuid.UUID, person_id: uuid.UUID) -> list[FaceKey]:
    """The rows of one photo of one person: a row per model it was indexed with."""
    return _face_keys(session, (Face.image_id == image_id) & (Face.person_id == person_id))


def _face_keys(session: Session, condition: ColumnElement[bool]) -> list[FaceKey]:
    return [FaceKey(*row) for row in session.execute(select(Face.id, Face.model_id, Face.image_id).where(condition))]


def faces_of_images(session: Session, model_row_id: int, image_ids: Sequence[uuid.UUID]) -> list[Face]:
    return list(session.scalars(select(Face).where(Face.model_id == model_row_id, Face.image_id.in_(image_ids))))


def face_states(session: Session, model_row_id: int) -> Sequence[tuple[uuid.UUID, uuid.UUID, FaceStatus, datetime]]:
    """(face id, person id, status, last change) of every face row of a model."""
    return session.execute(
        select(Face.id, Face.person_id, Face.status, Face.updated_at).where(Face.model_id == model_row_id)
    ).all()


def faces_with_images(session: Session, person_id: uuid.UUID, model_row_id: int) -> Sequence[tuple[Face, Image]]:
    """A person's faces under a model with their photos, oldest first."""
    return session.execute(
        select(Face, Image)
        .join(Image, Face.image_id == Image.id)
        .where(Face.person_id == person_id, Face.model_id == model_row_id)
        .order_by(Face.created_at)
    ).all()


def indexed_faces_with_photos(
    session: Session, model_row_id: int
) -> Sequence[tuple[uuid.UUID, uuid.UUID, list[Any], uuid.UUID, str, str]]:
    """(face id, person id, box, image id, source path, image sha256) of a model's indexed faces, by path."""
    return session.execute(
        select(Face.id, Face.person_id, Face.bbox, Image.id, Image.source_path, Image.sha256)
        .join(Image, Face.image_id == Image.id)
        .where(Face.model_id == model_row_id, Face.status == FaceStatus.indexed)
        .order_by(Image.source_path, Face.id)
    ).all()


def settled_photo_persons(session: Session, model_row_id: int) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """(image id, person id) of every photo and person a model holds a finished (not pending) face row for."""
    return {
        (image_id, person_id)
        for image_id, person_id in session.execute(
            select(Face.image_id, Face.person_id).where(
                Face.model_id == model_row_id, Face.status != FaceStatus.pending
            )
        )
    }


def enrollment_sources(session: Session, face_ids: Sequence[uuid.UUID]) -> list[tuple[str, str]]:
    """(source path, person external id) of these faces: what enrolls each again."""
    rows = session.execute(
        select(Image.source_path, Person.external_id)
        .select_from(Face)
        .join(Image, Face.image_id == Image.id)
        .join(Person, Face.person_id == Person.id)
        .where(Face.id.in_(face_ids))
    )
    return [(path, external_id) for path, external_id in rows]


def indexed_face_sources(session: Session, model_row_id: int) -> Sequence[tuple[str, str, list[Any]]]:
    """(source path, person external id, box) of every indexed face of a model, by person then path."""
    return session.execute(
        select(Image.source_path, Person.external_id, Face.bbox)
        .join(Face, Face.image_id == Image.id)
        .join(Person, Person.id == Face.person_id)
        .where(Face.model_id == model_row_id, Face.status == FaceStatus.indexed)
        .order_by(Person.external_id, Image.source_path)
    ).all()


def holds_faces(session: Session) -> bool:
    """Whether any face row exists (of any model or state)."""
    return session.scalar(select(Face.id).limit(1)) is not None


def count_gallery_persons(session: Session, model_row_id: int) -> int:
    """Persons with at least one indexed face of this model."""
    return (
        session.scalar(
            select(func.count(distinct(Face.person_id))).where(
                Face.model_id == model_row_id, Face.status == FaceStatus.indexed
            )
        )
        or 0
    )


def count_indexed_faces(session: Session, model_row_id: int) -> int:
    """Faces of this model SQL says the vector store holds (search compares it with the collection's count)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Face)
            .where(Face.model_id == model_row_id, Face.status == FaceStatus.indexed)
        )
        or 0
    )


def indexed_faces_by_model(session: Session) -> dict[int, int]:
    """Indexed faces per model row id."""
    rows = session.execute(
        select(Face.model_id, func.count()).where(Face.status == FaceStatus.indexed).group_by(Face.model_id)
    )
    return {model_id: count for model_id, count in rows}
