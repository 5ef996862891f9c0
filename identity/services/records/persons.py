"""Person records (`identity person add/list/show/update`), for the CLI and the HTTP API alike.

Merging and erasing people live in services.curation: they touch vectors too.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from identity.app.core import App
from identity.app.registry import chosen_model_row
from identity.services.paging import Page, decode_cursor, page_of
from identity.store.sql import persons as person_rows
from identity.store.sql.db import transaction
from identity.store.sql.pending_erasures import refuse_while_erasing
from identity.store.sql.persons import PersonRecord, person_record
from identity.store.sql.tables import Person


def add_person(
    app: App, external_id: str, display_name: str | None = None, attributes: dict[str, Any] | None = None
) -> PersonRecord:
    """A new person; a new person has no faces yet."""
    with transaction(app.sessions) as session:
        refuse_while_erasing(session, [external_id])
        return _record(person_rows.add_person(session, external_id, display_name, attributes), faces=0)


def list_people(
    app: App,
    query: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
    attributes: dict[str, list[str]] | None = None,
    external_id: str | None = None,
) -> Page[PersonRecord]:
    """People by external id, a page at a time, matching `query` literally in id, name or attributes,
    `attributes` (key: any of values) and `external_id` exactly."""
    offset = decode_cursor(cursor)
    model_row_id = _model_row_id(app)
    with app.sessions() as session:
        rows = person_rows.list_persons(session, query, limit + 1, offset, attributes, external_id)
        people = page_of(rows, offset, limit, person_rows.count_persons(session, query, attributes, external_id))
        counts = person_rows.indexed_face_counts(session, [p.id for p in people.items], model_row_id)
        return people.map(lambda p: _record(p, counts.get(p.id, 0)))


def show_person(app: App, ref: str) -> PersonRecord:
    """One person by external id or uuid (NotFound otherwise)."""
    model_row_id = _model_row_id(app)
    with app.sessions() as session:
        person = person_rows.get_person(session, ref)
        counts = person_rows.indexed_face_counts(session, [person.id], model_row_id)
        return _record(person, counts.get(person.id, 0))


def person_named(app: App, ref: str) -> uuid.UUID | None:
    """The id of the person `ref` (external id or uuid) names, or None when there is none (yet)."""
    with app.sessions() as session:
        found = person_rows.find_person(session, ref)
        return found.id if found else None


def update_person(
    app: App,
    ref: str,
    display_name: str | None = None,
    attributes: dict[str, Any] | None = None,
    remove: Sequence[str] = (),
) -> PersonRecord:
    """Set the name and/or attributes, then drop the `remove` keys; the record is the one `show_person` gives
    (its face count included: one shape for a person, whichever call returns it)."""
    model_row_id = _model_row_id(app)
    with transaction(app.sessions) as session:
        person = person_rows.update_person(session, ref, display_name, attributes, remove)
        counts = person_rows.indexed_face_counts(session, [person.id], model_row_id)
        return _record(person, counts.get(person.id, 0))


def _model_row_id(app: App) -> int | None:
    """Face counts are per model: a photo has a face row for every model it was indexed with."""
    model = chosen_model_row(app)
    return model.id if model else None


def _record(person: Person, faces: int | None = None) -> PersonRecord:
    return person_record(person, faces)
