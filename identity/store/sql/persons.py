"""Person records: the organization's key (external id) plus name and attributes."""

from __future__ import annotations

import uuid
from typing import Any, Sequence

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from identity.errors import IdentityError, NotFound
from identity.store.sql.models import Face, FaceStatus, Person


def find_person(session: Session, ref: str) -> Person | None:
    """A person by external id, or by uuid when `ref` is one and no external id matches."""
    person = session.scalars(select(Person).where(Person.external_id == ref)).one_or_none()
    return person if person is not None else _person_with_uuid(session, ref)


def get_person(session: Session, ref: str) -> Person:
    person = find_person(session, ref)
    if person is None:
        raise NotFound(f"no person with external id or uuid {ref!r}")
    return person


def add_person(session: Session, external_id: str, display_name: str | None = None,
               attributes: dict[str, Any] | None = None) -> Person:
    external_id = external_id.strip()
    if not external_id:
        raise IdentityError("external id must not be empty")
    if session.scalars(select(Person.id).where(Person.external_id == external_id)).first() is not None:
        raise IdentityError(f"person {external_id!r} already exists (use `identity person update`)")
    owner = _person_with_uuid(session, external_id)
    if owner is not None:
        # find_person accepts a uuid too, so this external id would name two people.
        raise IdentityError(f"external id {external_id!r} is the uuid of person {owner.external_id!r}; "
                            "an external id may not be another person's uuid")
    person = Person(external_id=external_id, display_name=display_name, attributes=dict(attributes or {}))
    session.add(person)
    session.flush()
    return person


def _person_with_uuid(session: Session, ref: str) -> Person | None:
    try:
        return session.get(Person, uuid.UUID(ref))
    except ValueError:
        return None


def get_or_create_person(session: Session, external_id: str, display_name: str | None = None,
                         attributes: dict[str, Any] | None = None) -> tuple[Person, bool]:
    person = session.scalars(select(Person).where(Person.external_id == external_id)).one_or_none()
    if person is not None:
        return person, False
    return add_person(session, external_id, display_name, attributes), True


def update_person(session: Session, ref: str, display_name: str | None = None,
                  attributes: dict[str, Any] | None = None, remove: Sequence[str] = ()) -> Person:
    person = get_person(session, ref)
    if display_name is not None:
        person.display_name = display_name
    if attributes or remove:
        merged = {**person.attributes, **(attributes or {})}
        for key in remove:
            merged.pop(key, None)
        person.attributes = merged  # a new dict, so the JSON column sees the change
    session.flush()
    return person


def list_persons(session: Session, query: str | None = None, limit: int = 100, offset: int = 0) -> list[Person]:
    stmt = select(Person).order_by(Person.external_id).limit(limit).offset(offset)
    if query:
        pattern = f"%{query.lower()}%"
        stmt = stmt.where(or_(
            func.lower(Person.external_id).like(pattern),
            func.lower(func.coalesce(Person.display_name, "")).like(pattern),
            func.lower(cast(Person.attributes, String)).like(pattern),
        ))
    return list(session.scalars(stmt))


def indexed_face_counts(session: Session, person_ids: Sequence[uuid.UUID], model_row_id: int | None) -> dict[uuid.UUID, int]:
    """Searchable faces per person under one model (a photo has a row per model it was indexed with)."""
    if not person_ids or model_row_id is None:
        return {}
    rows = session.execute(
        select(Face.person_id, func.count()).where(Face.person_id.in_(person_ids), Face.status == FaceStatus.indexed,
                                                   Face.model_id == model_row_id)
        .group_by(Face.person_id)
    )
    return {pid: n for pid, n in rows}


def person_record(person: Person, faces: int | None = None) -> dict[str, Any]:
    """A person as plain data, for JSON and tables."""
    record: dict[str, Any] = {
        "id": str(person.id),
        "external_id": person.external_id,
        "display_name": person.display_name,
        "attributes": person.attributes,
        "created_at": person.created_at.isoformat() if person.created_at else None,
    }
    if faces is not None:
        record["faces"] = faces
    return record
