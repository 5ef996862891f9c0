"""Curation: merge two records of one person, move or delete a face, erase a person.

SQL changes first (in one transaction, with an audit event), then the vector store:
the face vectors, then the templates of every person whose faces changed. A crash
between them leaves only what `identity doctor` repairs: orphan vectors (deleted),
vectors whose payload names the old person (re-pointed), stale templates (rewritten).
Search joins hits to person rows, so an erased person is never shown even in that window.

Deleting a face or a person is erasure: the vectors and templates are purged from the
vector store's files (VectorIndex.purge), the rows as identity.store.sql.erasure says,
and SQLite's log is checkpointed so the deleted bytes leave its files too. Erasing a
person is recorded first and finished even after a failure (identity.services.curation.erasure).

A photo of a person has one face row per model it was indexed with (a re-index keeps
the old model's rows and collection for rollback). Every change here applies to all
of them, so no model keeps a face the user moved or erased.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from identity.app.actor import resolve_actor
from identity.app.core import App
from identity.app.deployment import Deployment, ModelCollections, model_collections
from identity.app.templates import refresh_templates
from identity.errors import IdentityError, NotFound
from identity.serialize import json_field, to_json
from identity.services.curation.erasure import (
    CollectionPurge,
    Erasure,
    FaceErased,
    FaceNamed,
    Removed,
    erase_person,
    erase_uploads,
)
from identity.store.sql.audit_events import latest_audit_event, record_audit_event
from identity.store.sql.db import Session, flush_deleted, transaction
from identity.store.sql.erasure import drop_unused_images
from identity.store.sql.faces import (
    FaceKey,
    delete_faces,
    face_keys_of_person,
    face_keys_of_photo,
    get_face,
    reassign_faces,
    reassign_person_faces,
)
from identity.store.sql.jobs import delete_enrollment_jobs
from identity.store.sql.persons import delete_person_row, get_person, person_with_id
from identity.store.sql.reviews import move_reviews
from identity.store.sql.searches import move_search_hits
from identity.store.sql.tables import Face
from identity.store.vectors import VectorIndex


@dataclass(frozen=True)
class MergeResult:
    kept: str  # external ids
    merged: str
    faces_moved: int  # photos
    # What names them in a URL (an external id may hold `/`).
    kept_id: str | None = field(
        default=None, metadata=json_field(doc="the kept person's uuid, for the routes that take a person")
    )


@dataclass(frozen=True)
class FaceMove:
    face_id: str
    source: str | None = field(metadata=json_field(name="from"))  # the external id it was filed under (None: erased)
    target: str = field(metadata=json_field(name="to"))


def merge_persons(app: App, keep_ref: str, absorb_ref: str, actor: str | None = None) -> MergeResult:
    """Move every face and search hit of `absorb` to `keep`, then remove `absorb`."""
    dep = app.deployment(write=True)
    with transaction(app.sessions) as session:
        keep, absorb = get_person(session, keep_ref), get_person(session, absorb_ref)
        if keep.id == absorb.id:
            raise IdentityError(f"{keep_ref} and {absorb_ref} are the same person")
        faces = face_keys_of_person(session, absorb.id)
        reassign_person_faces(session, absorb.id, keep.id)
        move_search_hits(session, absorb.id, keep.id)
        move_reviews(session, absorb.id, keep.id)
        keep.attributes = {**absorb.attributes, **keep.attributes}
        keep.display_name = keep.display_name or absorb.display_name
        summary = MergeResult(keep.external_id, absorb.external_id, _photos(faces), str(keep.id))
        record_audit_event(
            session,
            resolve_actor(actor),
            "merge",
            person_id=keep.id,
            subject=keep.external_id,
            details={**to_json(summary), "merged_id": str(absorb.id)},
        )
        delete_person_row(session, absorb)
        keep_id, absorb_id = keep.id, absorb.id
    _relabel(dep, _by_model(faces), keep_id, [keep_id, absorb_id])
    return summary


def move_face(app: App, face_ref: str, target_ref: str, actor: str | None = None) -> FaceMove:
    dep = app.deployment(write=True)
    with transaction(app.sessions) as session:
        face = _get_face(session, face_ref)
        target = get_person(session, target_ref)
        source_id = face.person_id  # read before the update below re-points the loaded row
        source = person_with_id(session, source_id)
        siblings = _siblings(session, face)
        reassign_faces(session, [row.id for row in siblings], target.id)
        summary = FaceMove(str(face.id), source.external_id if source else None, target.external_id)
        record_audit_event(
            session,
            resolve_actor(actor),
            "move_face",
            person_id=target.id,
            subject=target.external_id,
            details=to_json(summary),
        )
    _relabel(dep, _by_model(siblings), target.id, [source_id, target.id])
    return summary


def _relabel(
    dep: Deployment, faces: dict[int, list[uuid.UUID]], person_id: uuid.UUID, persons: list[uuid.UUID]
) -> None:
    """Point each model's face vectors at `person_id`, then rewrite the templates of everyone they moved between."""
    with model_collections(dep, faces) as stores:
        for model_id, store in stores.items():
            store.faces.set_person(faces[model_id], person_id)
            _refresh(dep, model_id, store, persons)


def delete_face(app: App, face_ref: str, actor: str | None = None) -> Erasure:
    """Erase one photo of a person: its face rows, vectors (purged), and the image if no other face is on it."""
    dep = app.deployment(write=True)
    with transaction(app.sessions) as session:
        face = get_face(session, _face_uuid(face_ref))
        if face is None:
            gone = _face_already_deleted(session, face_ref)
            if gone is None:
                raise NotFound(f"no face with id {face_ref!r}")
            return gone
        person_id = face.person_id
        person = person_with_id(session, person_id)
        siblings = _siblings(session, face)
        summary = FaceErased(str(face.id), person.external_id if person else None)
        record_audit_event(
            session,
            resolve_actor(actor),
            "delete_face",
            person_id=face.person_id,
            subject=str(face.id),
            details=to_json(summary),
        )
        delete_faces(session, [row.id for row in siblings])
        if person is not None:  # the enrollment of this photo for this person goes with it
            delete_enrollment_jobs(session, face.image_id, person.external_id)
        paths: list[str] = []
        sql = {"faces": len(siblings), **drop_unused_images(session, {face.image_id}, paths)}
    vectors = _erase_vectors(dep, _by_model(siblings), person_id, lambda index, ids: index.delete(ids))
    sql["database"] = flush_deleted(app.engine)
    return Erasure(subject=summary, removed=Removed(sql, vectors, **erase_uploads(app, paths)))


def delete_person(app: App, ref: str, actor: str | None = None) -> Erasure:
    """Erase a person from every store, or finish their erasure left pending (identity.services.curation.erasure)."""
    return erase_person(app, ref, actor)


def _erase_vectors(
    dep: Deployment,
    faces: dict[int, list[uuid.UUID]],
    person_id: uuid.UUID,
    erase: Callable[[VectorIndex, list[uuid.UUID]], None],
) -> dict[str, CollectionPurge]:
    """Delete with `erase` in each model's collection and rewrite the person's template there (gone with
    their last face), then purge both: the old template is a mean of what was erased. Returns what was
    done, per collection."""
    report: dict[str, CollectionPurge] = {}
    with model_collections(dep, faces) as stores:
        for model_id, store in stores.items():
            erase(store.faces, faces[model_id])
            _refresh(dep, model_id, store, [person_id])
            report[store.faces.collection] = CollectionPurge(face_rows=len(faces[model_id]), purge=store.faces.purge())
            report[store.templates.collection] = CollectionPurge(purge=store.templates.purge())
    return report


def _refresh(dep: Deployment, model_row_id: int, store: ModelCollections, persons: list[uuid.UUID]) -> None:
    refresh_templates(dep.app.sessions, store.faces, store.templates, model_row_id, persons)


def _siblings(session: Session, face: Face) -> list[FaceKey]:
    """The face and its rows under other models: the same photo of the same person."""
    return face_keys_of_photo(session, face.image_id, face.person_id)


def _by_model(faces: Iterable[FaceKey]) -> dict[int, list[uuid.UUID]]:
    grouped: dict[int, list[uuid.UUID]] = {}
    for row in faces:
        grouped.setdefault(row.model_id, []).append(row.id)
    return grouped


def _photos(faces: Iterable[FaceKey]) -> int:
    """How many photos the rows stand for (a photo has a row per model it was indexed with)."""
    return len({row.image_id for row in faces})


def _face_already_deleted(session: Session, ref: str) -> Erasure | None:
    """Deleting a face twice is harmless: the second call reports the first deletion."""
    event = latest_audit_event(session, "delete_face", [ref])
    if event is None:
        return None
    return Erasure(
        already_deleted=True, subject=FaceNamed(ref), deleted_at=event.created_at.isoformat(), by=event.actor
    )


def _get_face(session: Session, ref: str) -> Face:
    face = get_face(session, _face_uuid(ref))
    if face is None:
        raise NotFound(f"no face with id {ref!r}")
    return face


def _face_uuid(ref: str) -> uuid.UUID:
    parsed = _maybe_uuid(ref)
    if parsed is None:
        raise NotFound(f"{ref!r} is not a face id (a uuid, as `identity audit` lists them)")
    return parsed


def _maybe_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None
