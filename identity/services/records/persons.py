"""Person records (`identity person add/list/show/update`), for the CLI and the HTTP API alike.

Merging and erasing people live in services.curation: they touch vectors too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from identity.app.core import App
from identity.app.registry import chosen_model_row
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
    offset: int = 0,
    attributes: dict[str, list[str]] | None = None,
    external_id: str | None = None,
) -> list[PersonRecord]:
    """People by external id, matching `query` literally in id, name or attributes, `attributes` (key: any of
    values) and `external_id` exactly."""
    model_row_id = _model_row_id(app)
    with app.sessions() as session:
        people = person_rows.list_persons(session, query, limit, offset, attributes, external_id)
        counts = person_rows.indexed_face_counts(session, [p.id for p in people], model_row_id)
        return [_record(p, counts.get(p.id, 0)) for p in people]


def show_person(app: App, ref: str) -> PersonRecord:
    """One person by external id or uuid (NotFound otherwise)."""
    model_row_id = _model_row_id(app)
    with app.sessions() as session:
        person = person_rows.get_person(session, ref)
        counts = person_rows.indexed_face_counts(session, [person.id], model_row_id)
        return _record(person, counts.get(person.id, 0))


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
