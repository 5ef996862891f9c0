"""A search's read of SQL, in one round trip: its candidates' person rows, and the reviews that rejected a
match for the same image before (a rejected match is never made again for the same photo)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, bindparam, cast, null, select, union_all
from sqlalchemy.orm import Session

from identity.store.sql.persons import PersonRecord, person_record, persons_by_id
from identity.store.sql.reviews import REJECTED
from identity.store.sql.tables import MatchReview, Person, SearchEvent

Rejections = dict[int, set[uuid.UUID]]  # face index -> persons a review rejected for that face of the image


# Built once, with its values as parameters: the compiled statement is reused search after search.
_CANDIDATES = union_all(
    select(
        Person.id.label("person_id"),
        Person.external_id,
        Person.display_name,
        Person.attributes,
        Person.created_at,
        cast(null(), BigInteger).label("review_id"),
        cast(null(), Integer).label("face_index"),
        cast(null(), String).label("verdict"),
    ).where(Person.id.in_(bindparam("person_ids", expanding=True))),
    select(
        MatchReview.person_id,
        cast(null(), String),
        cast(null(), String),
        cast(null(), JSON),
        MatchReview.created_at,
        MatchReview.id,
        MatchReview.face_index,
        MatchReview.verdict,
    )
    .join(SearchEvent, MatchReview.search_id == SearchEvent.id)
    .where(
        SearchEvent.query_sha256 == bindparam("sha256"),
        SearchEvent.model_id == bindparam("model_id"),
        MatchReview.person_id.is_not(None),
    ),
)


def candidates_and_rejections(
    session: Session, person_ids: Iterable[uuid.UUID], sha256: str, model_id: int
) -> tuple[dict[uuid.UUID, PersonRecord], Rejections]:
    """The persons among `person_ids` that exist (an erased one has no row), and per face index of this image
    (as this model detects it) the persons whose latest review, over every earlier search of the same bytes,
    rejected them. Rows of both kinds come back from one UNION ALL: a person row has no review id."""
    parameters = {"person_ids": list(person_ids), "sha256": sha256, "model_id": model_id}
    rows = session.connection().execute(_CANDIDATES, parameters).all()
    people = {row.person_id: _record(row) for row in rows if row.review_id is None}
    verdicts = {}
    for row in sorted((r for r in rows if r.review_id is not None), key=lambda r: (r.created_at, r.review_id)):
        verdicts[(row.face_index, row.person_id)] = row.verdict  # the latest review of a face and person wins
    rejected: Rejections = {}
    for (face_index, person_id), verdict in verdicts.items():
        if verdict == REJECTED:
            rejected.setdefault(face_index, set()).add(person_id)
    return people, rejected


def person_records(session: Session, person_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, PersonRecord]:
    """The persons among these ids that exist, as records, by id (the rare second read)."""
    return {person_id: person_record(person) for person_id, person in persons_by_id(session, person_ids).items()}


def _record(row: Any) -> PersonRecord:
    created = row.created_at
    return PersonRecord(
        str(row.person_id), row.external_id, row.display_name, row.attributes, created.isoformat() if created else None
    )
