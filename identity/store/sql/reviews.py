"""Match reviews: append-only verdicts on search hits, and what they say about an image searched again."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from identity.store.sql.db import rowcount
from identity.store.sql.tables import MatchReview, SearchEvent, SearchHit


class ReviewVerdict(StrEnum):
    """A hit's review: the verdict in force (confirmed, rejected), or none yet."""

    confirmed = "confirmed"
    rejected = "rejected"
    unreviewed = "unreviewed"


CONFIRMED, REJECTED, UNREVIEWED = ReviewVerdict
VERDICTS = (CONFIRMED, REJECTED)  # what a reviewer may say
REVIEW_STATES = tuple(ReviewVerdict)

ReviewKey = tuple[uuid.UUID, int, uuid.UUID | None]  # search, face index, person


def add_review(session: Session, review: MatchReview) -> MatchReview:
    session.add(review)
    session.flush()
    return review


def latest_reviews(session: Session, search_ids: Iterable[uuid.UUID]) -> dict[ReviewKey, MatchReview]:
    """The review in force for each (search, face, person) of these searches: the latest one."""
    wanted = list(set(search_ids))
    latest: dict[ReviewKey, MatchReview] = {}
    for start in range(0, len(wanted), 500):  # bounded IN lists
        rows = session.scalars(
            select(MatchReview)
            .where(MatchReview.search_id.in_(wanted[start : start + 500]))
            .order_by(MatchReview.created_at, MatchReview.id)
        )
        for review in rows:
            latest[(review.search_id, review.face_index, review.person_id)] = review
    return latest


def face_hits(session: Session, search_id: uuid.UUID, face_index: int) -> list[SearchHit]:
    """The ranked hits of one face of a search, best first."""
    return list(
        session.scalars(
            select(SearchHit)
            .where(SearchHit.search_id == search_id, SearchHit.face_index == face_index)
            .order_by(SearchHit.rank)
        )
    )


def latest_verdict() -> ScalarSelect[str]:
    """The verdict in force on the SearchHit of the enclosing query (NULL: never reviewed)."""
    return (
        select(MatchReview.verdict)
        .where(
            MatchReview.search_id == SearchHit.search_id,
            MatchReview.face_index == SearchHit.face_index,
            _unindexed(MatchReview.person_id) == SearchHit.person_id,
        )
        .order_by(MatchReview.created_at.desc(), MatchReview.id.desc())
        .limit(1)
        .correlate(SearchHit)
        .scalar_subquery()
    )


def _unindexed(person_id: InstrumentedAttribute[uuid.UUID | None]) -> ColumnElement[Any]:
    """The column as an expression no index answers, so that the planner looks a hit's reviews up by search
    (a handful of rows) rather than by person: SQLite, without statistics, took the person index, whose
    thousands of reviews per person made the review queue take seconds. NULL (an erased person) stays
    unequal to every person: coalesced to the search id, never a person id."""
    return func.coalesce(person_id, MatchReview.search_id)


def in_review_state(state: str) -> ColumnElement[bool]:
    """On a SearchHit: its latest review is `state` ("confirmed", "rejected"), or it has none ("unreviewed")."""
    if state == UNREVIEWED:  # no review at all: an existence test, no latest one to sort out
        return ~(
            select(MatchReview.id)
            .where(
                MatchReview.search_id == SearchHit.search_id,
                MatchReview.face_index == SearchHit.face_index,
                _unindexed(MatchReview.person_id) == SearchHit.person_id,
            )
            .correlate(SearchHit)
            .exists()
        )
    return latest_verdict() == state


def searches_with_review_state(state: str) -> ColumnElement[bool]:
    """On a SearchEvent: some face of it was a match whose review state is `state`."""
    return SearchEvent.id.in_(
        select(SearchHit.search_id).where(SearchHit.rank == 1, SearchHit.decision == "match", in_review_state(state))
    )


def _first_hits_where(
    person_id: uuid.UUID | None, since: datetime | None, decision: str | None, review_state: str | None
) -> list[ColumnElement[bool]]:
    where = [SearchHit.rank == 1]
    if review_state is not None:
        where.append(in_review_state(review_state))
    if person_id is not None:
        where.append(SearchHit.person_id == person_id)
    if since is not None:
        where.append(SearchEvent.created_at >= since)
    if decision is not None:
        where.append(SearchHit.decision == decision)
    return where


def first_hits(
    session: Session,
    person_id: uuid.UUID | None = None,
    since: datetime | None = None,
    decision: str | None = None,
    review_state: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Sequence[tuple[SearchHit, SearchEvent]]:
    """The rank-1 hit of every searched face (what its decision was about), with its search, newest first."""
    stmt = (
        select(SearchHit, SearchEvent)
        .join(SearchEvent, SearchHit.search_id == SearchEvent.id)
        .where(*_first_hits_where(person_id, since, decision, review_state))
        .order_by(SearchEvent.created_at.desc(), SearchEvent.id, SearchHit.face_index)
    )
    if offset:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.execute(stmt).all()


def first_hits_page(
    session: Session,
    person_id: uuid.UUID | None,
    since: datetime | None,
    decision: str | None,
    review_state: str | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[tuple[SearchHit, SearchEvent]], int]:
    """A page of `first_hits` and how many there are in all, in one pass (a window count)."""
    stmt = (
        select(SearchHit, SearchEvent, func.count().over().label("total"))
        .join(SearchEvent, SearchHit.search_id == SearchEvent.id)
        .where(*_first_hits_where(person_id, since, decision, review_state))
        .order_by(SearchEvent.created_at.desc(), SearchEvent.id, SearchHit.face_index)
        .offset(offset)
        .limit(limit)
    )
    rows = session.execute(stmt).all()
    if rows:
        return [(row[0], row[1]) for row in rows], int(rows[0].total)
    if not offset:
        return [], 0
    counted = (
        select(func.count())
        .select_from(SearchHit)
        .join(SearchEvent, SearchHit.search_id == SearchEvent.id)
        .where(*_first_hits_where(person_id, since, decision, review_state))
    )
    return [], int(session.scalar(counted) or 0)  # past the end: the count alone


def runner_up_hits(session: Session, search_ids: Iterable[uuid.UUID]) -> dict[tuple[uuid.UUID, int], SearchHit]:
    """The rank-2 hit (the runner-up person) of every face of these searches, by (search, face index)."""
    wanted = list(set(search_ids))
    found: dict[tuple[uuid.UUID, int], SearchHit] = {}
    for start in range(0, len(wanted), 500):  # bounded IN lists
        for hit in session.scalars(
            select(SearchHit).where(SearchHit.search_id.in_(wanted[start : start + 500]), SearchHit.rank == 2)
        ):
            found[(hit.search_id, hit.face_index)] = hit
    return found


def review_history(session: Session, search_ids: Iterable[uuid.UUID]) -> dict[ReviewKey, list[MatchReview]]:
    """Every review of each (search, face, person) of these searches, oldest first (the last is in force)."""
    wanted = list(set(search_ids))
    history: dict[ReviewKey, list[MatchReview]] = {}
    for start in range(0, len(wanted), 500):  # bounded IN lists
        rows = session.scalars(
            select(MatchReview)
            .where(MatchReview.search_id.in_(wanted[start : start + 500]))
            .order_by(MatchReview.created_at, MatchReview.id)
        )
        for review in rows:
            history.setdefault((review.search_id, review.face_index, review.person_id), []).append(review)
    return history


def unlink_reviews(session: Session, person_id: uuid.UUID) -> int:
    """Erasure: the reviews stay (who decided what, when) without the person or the reviewer's note (also where
    a rejection named them as who the face really was)."""
    named = (
        update(MatchReview).where(MatchReview.actual_person_id == person_id).values(actual_person_id=None, note=None)
    )
    session.execute(named)
    return rowcount(
        session.execute(update(MatchReview).where(MatchReview.person_id == person_id).values(person_id=None, note=None))
    )


def move_reviews(session: Session, from_person: uuid.UUID, to_person: uuid.UUID) -> None:
    """A merge of two records of one person takes the reviews along with the search hits (and the rejections
    that named the absorbed record as who the face really was)."""
    session.execute(update(MatchReview).where(MatchReview.person_id == from_person).values(person_id=to_person))
    session.execute(
        update(MatchReview).where(MatchReview.actual_person_id == from_person).values(actual_person_id=to_person)
    )


def searches_by_review(session: Session, search_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """Per search, the review states of its matched faces ("confirmed", "rejected", "unreviewed")."""
    matched = session.execute(
        select(SearchHit.search_id, SearchHit.face_index, SearchHit.person_id).where(
            SearchHit.search_id.in_(search_ids), SearchHit.rank == 1, SearchHit.decision == "match"
        )
    ).all()
    reviews = latest_reviews(session, search_ids)
    states: dict[uuid.UUID, set[str]] = {}
    for row in matched:
        review = reviews.get((row.search_id, row.face_index, row.person_id))
        states.setdefault(row.search_id, set()).add(review.verdict if review else UNREVIEWED)
    return states
