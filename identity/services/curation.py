"""Curation: merge two records of one person, move or delete a face, erase a person.

SQL changes first (in one transaction, with an audit event), then the vector store.
A crash between the two leaves only what `identity doctor` repairs: orphan vectors
(deleted) or vectors whose payload names the old person (re-pointed). Search joins
hits to person rows, so an erased person is never shown even in that window.

A photo of a person has one face row per model it was indexed with (a re-index keeps
the old model's rows and collection for rollback). Every change here applies to all
of them, so no model keeps a face the user moved or erased.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterable, Sequence

from sqlalchemy import Row, select, update

from identity.errors import IdentityError, NotFound
from identity.services.actor import resolve_actor
from identity.services.deployment import Deployment, model_indexes
from identity.store.sql.db import transaction
from identity.store.sql.models import AuditEvent, Face, Person, SearchHit
from identity.store.sql.persons import find_person, get_person


def merge_persons(dep: Deployment, keep_ref: str, absorb_ref: str, actor: str | None = None) -> dict[str, Any]:
    """Move every face and search hit of `absorb` to `keep`, then remove `absorb`."""
    with transaction(dep.runtime.sessions) as session:
        keep, absorb = get_person(session, keep_ref), get_person(session, absorb_ref)
        if keep.id == absorb.id:
            raise IdentityError(f"{keep_ref} and {absorb_ref} are the same person")
        faces = _faces(session, Face.person_id == absorb.id)
        session.execute(update(Face).where(Face.person_id == absorb.id).values(person_id=keep.id))
        session.execute(update(SearchHit).where(SearchHit.person_id == absorb.id).values(person_id=keep.id))
        keep.attributes = {**absorb.attributes, **keep.attributes}
        keep.display_name = keep.display_name or absorb.display_name
        summary = {"kept": keep.external_id, "merged": absorb.external_id, "faces_moved": _photos(faces)}
        session.add(AuditEvent(actor=resolve_actor(actor), action="merge", person_id=keep.id,
                               subject=keep.external_id, details={**summary, "merged_id": str(absorb.id)}))
        session.delete(absorb)
        keep_id = keep.id
    with model_indexes(dep, _by_model(faces)) as indexes:
        for model_id, face_ids in _by_model(faces).items():
            indexes[model_id].set_person(face_ids, keep_id)
    return summary


def move_face(dep: Deployment, face_ref: str, target_ref: str, actor: str | None = None) -> dict[str, Any]:
    with transaction(dep.runtime.sessions) as session:
        face = _get_face(session, face_ref)
        target = get_person(session, target_ref)
        source = session.get(Person, face.person_id)
        siblings = _siblings(session, face)
        session.execute(update(Face).where(Face.id.in_([row.id for row in siblings])).values(person_id=target.id))
        summary = {"face_id": str(face.id), "from": source.external_id if source else None, "to": target.external_id}
        session.add(AuditEvent(actor=resolve_actor(actor), action="move_face", person_id=target.id,
                               subject=target.external_id, details=summary))
    with model_indexes(dep, _by_model(siblings)) as indexes:
        for model_id, face_ids in _by_model(siblings).items():
            indexes[model_id].set_person(face_ids, target.id)
    return summary


def delete_face(dep: Deployment, face_ref: str, actor: str | None = None) -> dict[str, Any]:
    with transaction(dep.runtime.sessions) as session:
        face = session.get(Face, _face_uuid(face_ref))
        if face is None:
            gone = _already_gone(session, "delete_face", face_ref)
            if gone is None:
                raise NotFound(f"no face with id {face_ref!r}")
            return gone
        person = session.get(Person, face.person_id)
        siblings = _siblings(session, face)
        summary = {"face_id": str(face.id), "person": person.external_id if person else None}
        session.add(AuditEvent(actor=resolve_actor(actor), action="delete_face", person_id=face.person_id,
                               subject=str(face.id), details=summary))
        session.query(Face).filter(Face.id.in_([row.id for row in siblings])).delete(synchronize_session=False)
    with model_indexes(dep, _by_model(siblings)) as indexes:
        for model_id, face_ids in _by_model(siblings).items():
            indexes[model_id].delete(face_ids)
    return summary


def delete_person(dep: Deployment, ref: str, actor: str | None = None) -> dict[str, Any]:
    """Erase a person: vectors and face rows go; an audit event without biometric data stays."""
    with transaction(dep.runtime.sessions) as session:
        person = find_person(session, ref)
        if person is None:
            gone = _already_gone(session, "delete_person", ref)
            if gone is None:
                raise NotFound(f"no person with external id or uuid {ref!r}")
            return gone
        faces = _faces(session, Face.person_id == person.id)
        summary = {"deleted": person.external_id, "person_id": str(person.id), "faces_erased": _photos(faces)}
        session.add(AuditEvent(actor=resolve_actor(actor), action="delete_person", person_id=person.id,
                               subject=person.external_id, details=summary))
        session.delete(person)
        person_id = person.id
    # The active collection always, in case a vector outlived its row; every other model holding the person too.
    with model_indexes(dep, {dep.model.id, *_by_model(faces)}) as indexes:
        for index in indexes.values():
            index.delete_person(person_id)
    return summary


def _faces(session: Any, condition: Any) -> Sequence[Row[Any]]:
    return session.execute(select(Face.id, Face.model_id, Face.image_id).where(condition)).all()


def _siblings(session: Any, face: Face) -> Sequence[Row[Any]]:
    """The face and its rows under other models: the same photo of the same person."""
    return _faces(session, (Face.image_id == face.image_id) & (Face.person_id == face.person_id))


def _by_model(faces: Iterable[Row[Any]]) -> dict[int, list[uuid.UUID]]:
    grouped: dict[int, list[uuid.UUID]] = {}
    for row in faces:
        grouped.setdefault(row.model_id, []).append(row.id)
    return grouped


def _photos(faces: Iterable[Row[Any]]) -> int:
    """How many photos the rows stand for (a photo has a row per model it was indexed with)."""
    return len({row.image_id for row in faces})


def _already_gone(session: Any, action: str, ref: str) -> dict[str, Any] | None:
    """Deleting twice is harmless: the second call reports the first deletion."""
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == action, AuditEvent.subject == ref)
        .order_by(AuditEvent.created_at.desc()).limit(1)
    ).first()
    if event is None:
        by_id = _maybe_uuid(ref)
        if by_id is not None:
            event = session.scalars(select(AuditEvent).where(
                AuditEvent.action == action, AuditEvent.person_id == by_id).limit(1)).first()
    if event is None:
        return None
    return {"already_deleted": True, "subject": event.subject, "deleted_at": event.created_at.isoformat(),
            "by": event.actor}


def _get_face(session: Any, ref: str) -> Face:
    face = session.get(Face, _face_uuid(ref))
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

