"""Person records: the organization's key (external id) plus name and attributes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, String, cast, exists, func, or_, select
from sqlalchemy.orm import Session

from identity.errors import IdentityError, InvalidArgument, NotFound
from identity.serialize import json_field
from identity.store.sql.tables import Face, FaceStatus, Person


def _column_length(name: str) -> int:
    """The declared length of one of the persons table's String columns."""
    kind = Person.__table__.c[name].type
    assert isinstance(kind, String) and kind.length is not None, name
    return kind.length


MAX_EXTERNAL_ID = _column_length("external_id")  # 255: the column on every database
MAX_DISPLAY_NAME = _column_length("display_name")


def check_external_id(external_id: str) -> str:
    """The id as stored (stripped), or an IdentityError saying why no database would take it.

    Every way in (enroll DIR / --manifest / --person, `person add`) goes through here, so
    SQLite, which does not enforce VARCHAR lengths, accepts exactly what Postgres does.
    """
    external_id = external_id.strip()
    if not external_id:
        raise InvalidArgument("external id must not be empty")
    if len(external_id) > MAX_EXTERNAL_ID:
        raise InvalidArgument(f"external id is {len(external_id)} characters, more than the {MAX_EXTERNAL_ID} allowed")
    if any(ord(c) < 32 or ord(c) == 127 for c in external_id):
        raise InvalidArgument(f"external id {external_id!r} contains a control character")
    return external_id


def check_display_name(display_name: str | None) -> str | None:
    if display_name is not None and len(display_name) > MAX_DISPLAY_NAME:
        raise InvalidArgument(
            f"display name is {len(display_name)} characters, more than the {MAX_DISPLAY_NAME} allowed"
        )
    if display_name is not None and "\0" in display_name:  # Postgres refuses NUL in text; SQLite would keep it
        raise InvalidArgument("display name contains a NUL character")
    return display_name


def find_person(session: Session, ref: str) -> Person | None:
    """A person by external id, or by uuid when `ref` is one and no external id matches."""
    person = session.scalars(select(Person).where(Person.external_id == ref)).one_or_none()
    return person if person is not None else _person_with_uuid(session, ref)


def get_person(session: Session, ref: str) -> Person:
    person = find_person(session, ref)
    if person is None:
        raise NotFound(f"no person with external id or uuid {ref!r}")
    return person


def add_person(
    session: Session, external_id: str, display_name: str | None = None, attributes: dict[str, Any] | None = None
) -> Person:
    external_id = check_external_id(external_id)
    display_name = check_display_name(display_name)
    if session.scalars(select(Person.id).where(Person.external_id == external_id)).first() is not None:
        raise IdentityError(f"person {external_id!r} already exists (use `identity person update`)")
    owner = _person_with_uuid(session, external_id)
    if owner is not None:
        # find_person accepts a uuid too, so this external id would name two people.
        raise IdentityError(
            f"external id {external_id!r} is the uuid of person {owner.external_id!r}; "
            "an external id may not be another person's uuid"
        )
    person = Person(external_id=external_id, display_name=display_name, attributes=dict(attributes or {}))
    session.add(person)
    session.flush()
    return person


def _person_with_uuid(session: Session, ref: str) -> Person | None:
    try:
        return session.get(Person, uuid.UUID(ref))
    except ValueError:
        return None


def get_or_create_person(
    session: Session, external_id: str, display_name: str | None = None, attributes: dict[str, Any] | None = None
) -> tuple[Person, bool]:
    person = session.scalars(select(Person).where(Person.external_id == external_id)).one_or_none()
    if person is not None:
        return person, False
    return add_person(session, external_id, display_name, attributes), True


def update_person(
    session: Session,
    ref: str,
    display_name: str | None = None,
    attributes: dict[str, Any] | None = None,
    remove: Sequence[str] = (),
) -> Person:
    person = get_person(session, ref)
    if display_name is not None:
        person.display_name = check_display_name(display_name)
    if attributes or remove:
        merged = {**person.attributes, **(attributes or {})}
        for key in remove:
            merged.pop(key, None)
        person.attributes = merged  # a new dict, so the JSON column sees the change
    session.flush()
    return person


def list_persons(
    session: Session,
    query: str | None = None,
    limit: int = 100,
    offset: int = 0,
    attributes: dict[str, list[str]] | None = None,
    external_id: str | None = None,
) -> list[Person]:
    """Persons by external id; `query` matches id, name or attributes as text, `attributes` like search filters,
    `external_id` exactly (any character, `/` included: such an id cannot be a URL path segment)."""
    stmt = _persons_matching(session, query, attributes, external_id)
    return list(session.scalars(stmt.order_by(Person.external_id).limit(limit).offset(offset)))


def count_persons(
    session: Session,
    query: str | None = None,
    attributes: dict[str, list[str]] | None = None,
    external_id: str | None = None,
) -> int:
    """How many persons list_persons finds with these filters, on all its pages."""
    matching = _persons_matching(session, query, attributes, external_id).subquery()
    return session.scalar(select(func.count()).select_from(matching)) or 0


def _persons_matching(
    session: Session, query: str | None, attributes: dict[str, list[str]] | None, external_id: str | None
) -> Select[Person]:
    stmt = select(Person)
    if external_id is not None:
        stmt = stmt.where(Person.external_id == external_id)
    for key, values in (attributes or {}).items():
        stmt = stmt.where(_attribute_in(session.get_bind().dialect.name, key, values))
    if query:
        # Literal text, not a LIKE pattern: `_`, `%` and backslash are escaped (autoescape), so `q=_` finds an
        # underscore.
        text = query.lower()
        stmt = stmt.where(
            or_(
                func.lower(Person.external_id).contains(text, autoescape=True),
                func.lower(func.coalesce(Person.display_name, "")).contains(text, autoescape=True),
                func.lower(cast(Person.attributes, String)).contains(text, autoescape=True),
            )
        )
    return stmt


def persons_with_attributes(session: Session, filters: dict[str, list[str]]) -> list[uuid.UUID]:
    """Ids of the persons whose attribute `key` is one of its values, for every key."""
    stmt = select(Person.id)
    for key, values in filters.items():
        stmt = stmt.where(_attribute_in(session.get_bind().dialect.name, key, values))
    return list(session.scalars(stmt))


def _attribute_in(dialect: str, key: str, values: list[str]) -> ColumnElement[bool]:
    if dialect != "sqlite":
        matches: ColumnElement[bool] = Person.attributes[key].as_string().in_(values)
        return matches
    # SQLite's JSON paths ($."key") compare a member's name as written in the stored text, so
    # a key stored escaped (\u0433..., older rows) or holding a quote never matches; json_each
    # yields the decoded names, as Postgres' ->> compares them.
    member = func.json_each(Person.attributes).table_valued("key", "value").alias("member")
    return exists(select(1).select_from(member).where(member.c.key == key, member.c.value.in_(values)))


def indexed_face_counts(
    session: Session, person_ids: Sequence[uuid.UUID], model_row_id: int | None
) -> dict[uuid.UUID, int]:
    """Searchable faces per person under one model (a photo has a row per model it was indexed with)."""
    if not person_ids or model_row_id is None:
        return {}
    rows = session.execute(
        select(Face.person_id, func.count())
        .where(Face.person_id.in_(person_ids), Face.status == FaceStatus.indexed, Face.model_id == model_row_id)
        .group_by(Face.person_id)
    )
    return {pid: n for pid, n in rows}


def person_ids_by_external_id(session: Session) -> dict[str, uuid.UUID]:
    """Every person's uuid by external id (evaluation maps labels to the persons it enrolled)."""
    return {external_id: person_id for external_id, person_id in session.execute(select(Person.external_id, Person.id))}


def indexed_face_ids(
    session: Session, model_row_id: int, person_ids: Sequence[uuid.UUID] | None = None, chunk: int = 500
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Searchable face ids per person uuid under one model: of the given persons, or of everyone."""
    return _indexed_faces(session, model_row_id, Face.person_id, person_ids, chunk)


def _indexed_faces(
    session: Session, model_row_id: int, key: Any, values: Sequence[Any] | None, chunk: int
) -> dict[Any, list[uuid.UUID]]:
    """Searchable face ids under one model, grouped by `key` (a person column, filtered to `values` if given)."""
    stmt = (
        select(key, Face.id)
        .select_from(Face)
        .join(Person, Face.person_id == Person.id)
        .where(Face.status == FaceStatus.indexed, Face.model_id == model_row_id)
        .order_by(key, Face.created_at, Face.id)
    )
    wanted = None if values is None else list(values)
    groups = [None] if wanted is None else [wanted[i : i + chunk] for i in range(0, len(wanted), chunk)]
    faces: dict[Any, list[uuid.UUID]] = {}
    for group in groups:
        for value, face_id in session.execute(stmt if group is None else stmt.where(key.in_(group))):
            faces.setdefault(value, []).append(face_id)
    return faces


@dataclass(frozen=True)
class PersonRecord:
    """A person as every answer gives them (`person show`, a search candidate, an audit, a look-alike)."""

    id: str
    external_id: str
    display_name: str | None
    attributes: dict[str, Any]
    created_at: str | None = field(metadata=json_field(doc="ISO 8601 UTC with its offset"))
    # Searchable faces under the model in use: on every person answer; None (no key) inside other answers.
    faces: int | None = field(default=None, metadata=json_field(omit_if_none=True))


def person_record(person: Person, faces: int | None = None) -> PersonRecord:
    """A person as plain data, for JSON and tables."""
    return PersonRecord(
        str(person.id),
        person.external_id,
        person.display_name,
        person.attributes,
        person.created_at.isoformat() if person.created_at else None,
        faces,
    )


def indexed_faces_by_person(
    session: Session, model_row_id: int, external_ids: Sequence[str] | None = None, chunk: int = 500
) -> dict[str, list[uuid.UUID]]:
    """Searchable face ids per external id under one model: of the given persons, or of everyone."""
    return _indexed_faces(session, model_row_id, Person.external_id, external_ids, chunk)


def person_by_external_id(session: Session, external_id: str) -> Person | None:
    """A person by external id only (find_person also takes a uuid)."""
    return session.scalars(select(Person).where(Person.external_id == external_id)).one_or_none()


def person_with_id(session: Session, person_id: uuid.UUID) -> Person | None:
    return session.get(Person, person_id)


def persons_by_id(session: Session, person_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Person]:
    """The persons among these ids that exist (an erased one has no row), by id."""
    ids = list(person_ids)
    if not ids:
        return {}
    return {p.id: p for p in session.scalars(select(Person).where(Person.id.in_(ids)))}


def delete_person_row(session: Session, person: Person) -> None:
    """Delete a person's row; rows referring to it follow their foreign keys (faces go, search hits unlink)."""
    session.delete(person)
