"""The search log: one append-only event per search, with its ranked hits per face."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.orm import Session

from identity.store.sql.reviews import searches_with_review_state
from identity.store.sql.tables import SearchEvent, SearchHit, utcnow


# A face's outcome. A face not searched has no hits: the event's parameters list it under NOT_SEARCHED.
class Decision(StrEnum):  # a searched face's outcome
    match = "match"
    unknown = "unknown"
    not_searched = "not_searched"  # too small to search


MATCH, UNKNOWN, NOT_SEARCHED = Decision


# Built once: executed with their rows as parameters, the compiled statements are reused search after search.
_INSERT_EVENT = insert(SearchEvent)
_INSERT_HITS = insert(SearchHit)


def record_search(session: Session, event: dict[str, Any], hits: Sequence[dict[str, Any]]) -> uuid.UUID:
    """Append a search (the columns of its search_events row) and its hits (search_hits rows without a search
    id: they get the event's); returns its id. Two statements, whatever the number of hits (the hits in one
    executemany), on the session's connection: no ORM bookkeeping on the search path."""
    search_id = uuid.uuid4()
    connection = session.connection()
    connection.execute(_INSERT_EVENT, {"created_at": utcnow(), **event, "id": search_id})  # a given time is kept
    if hits:
        connection.execute(_INSERT_HITS, [{**hit, "search_id": search_id} for hit in hits])
    return search_id


def recent_searches(
    session: Session,
    person_id: uuid.UUID | None = None,
    since: datetime | None = None,
    limit: int = 100,
    actor: str | None = None,
    matched: bool | None = None,
    review_state: str | None = None,
    offset: int = 0,
) -> list[SearchEvent]:
    """The newest searches first; when given, only those that returned `person_id`, made at or after
    `since`, by `actor`, in which some face was (`matched`) or no face was (not `matched`) a match, and
    with a match in `review_state` (identity.store.sql.reviews)."""
    stmt = _searches_matching(person_id, since, actor, matched, review_state)
    # the id breaks ties of equal times, so pages neither repeat nor skip a search
    stmt = stmt.order_by(SearchEvent.created_at.desc(), SearchEvent.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(stmt))


def count_searches(
    session: Session,
    person_id: uuid.UUID | None = None,
    since: datetime | None = None,
    actor: str | None = None,
    matched: bool | None = None,
    review_state: str | None = None,
) -> int:
    """How many searches recent_searches finds with these filters, on all its pages."""
    matching = _searches_matching(person_id, since, actor, matched, review_state).subquery()
    return session.scalar(select(func.count()).select_from(matching)) or 0


def _searches_matching(
    person_id: uuid.UUID | None,
    since: datetime | None,
    actor: str | None,
    matched: bool | None,
    review_state: str | None,
) -> Select[SearchEvent]:
    stmt = select(SearchEvent)
    if person_id is not None:
        stmt = stmt.where(SearchEvent.id.in_(select(SearchHit.search_id).where(SearchHit.person_id == person_id)))
    if since:
        stmt = stmt.where(SearchEvent.created_at >= since)
    if actor is not None:
        stmt = stmt.where(SearchEvent.actor == actor)
    if matched is not None:
        any_match = SearchEvent.id.in_(select(SearchHit.search_id).where(SearchHit.decision == "match"))
        stmt = stmt.where(any_match if matched else ~any_match)
    if review_state is not None:
        stmt = stmt.where(searches_with_review_state(review_state))
    return stmt


def top_hits(session: Session, search_ids: Sequence[uuid.UUID]) -> list[SearchHit]:
    """The rank-1 hits of these searches (one per searched face)."""
    return list(session.scalars(select(SearchHit).where(SearchHit.search_id.in_(search_ids), SearchHit.rank == 1)))


def hits_of_person(session: Session, person_id: uuid.UUID) -> Sequence[tuple[SearchHit, SearchEvent]]:
    """Every hit that returned the person, with its search, newest search first."""
    return session.execute(
        select(SearchHit, SearchEvent)
        .join(SearchEvent, SearchHit.search_id == SearchEvent.id)
        .where(SearchHit.person_id == person_id)
        .order_by(SearchEvent.created_at.desc())
    ).all()


def move_search_hits(session: Session, from_person: uuid.UUID, to_person: uuid.UUID) -> None:
    """Point the hits that returned one person at another (a merge of two records of one person)."""
    session.execute(update(SearchHit).where(SearchHit.person_id == from_person).values(person_id=to_person))
