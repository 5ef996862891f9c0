"""The review queue: searched faces a page at a time, with what a reviewer needs to decide each.

Each item names the person the decision was about, their nearest enrolled faces for that search
(the search log's SearchHit.faces), the runner-up person, the review in force and the ones it
superseded (so a page can say "reviewed before by X"). The page and /v1/reviews read the same
function; `identity review list` reads `list_reviews`, over the same filters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from identity.app.core import App
from identity.errors import InvalidArgument
from identity.services.paging import Page, decode_cursor, page_of
from identity.services.review.matches import REVIEW_JSON, ReviewState
from identity.store.sql.persons import get_person, persons_by_id
from identity.store.sql.reviews import (
    UNREVIEWED,
    ReviewVerdict,
    first_hits_page,
    review_history,
    runner_up_hits,
)
from identity.store.sql.searches import Decision
from identity.store.sql.tables import MatchReview, Person

MAX_PAGE = 200


@dataclass(frozen=True)
class ReviewPerson:
    """A person a review item names."""

    id: str  # uuid: names them in a URL whatever their external id holds
    external_id: str
    display_name: str | None


@dataclass(frozen=True)
class NearFace:
    """One of the person's enrolled faces nearest the searched face, and its score."""

    face_id: str
    score: float


@dataclass(frozen=True)
class RunnerUp:
    """The second candidate of the face: the person the decision was closest to confusing."""

    person: ReviewPerson | None  # None once erased
    score: float | None


@dataclass(frozen=True)
class PastReview:
    """A review an even later one superseded."""

    verdict: ReviewVerdict
    by: str
    at: str  # ISO 8601
    note: str | None
    actual_person: str | None  # the external id a rejection named as who the face really is


@dataclass(frozen=True)
class QueueItem:
    """One searched face's decision, what to compare it with, and its reviews."""

    search_id: str
    when: str
    searched_by: str
    query_name: str | None  # None once redacted
    face_index: int
    decision: Decision
    score: float | None  # the first candidate's score (None once erased)
    threshold: float
    decision_rule: str | None  # how the decision score was made (raw / normalized)
    person: ReviewPerson | None  # who the decision named; None once erased
    faces: list[NearFace]  # the person's nearest enrolled faces, best first (none before schema 0012)
    runner_up: RunnerUp | None  # None: the face had a single candidate
    review: ReviewState | None = field(default=None, metadata=REVIEW_JSON)
    actual_person: str | None = None  # the review in force is a rejection naming who the face really is
    earlier: list[PastReview] = field(default_factory=list)  # superseded reviews, newest first


def review_queue(
    app: App,
    person_ref: str | None = None,
    unreviewed: bool = False,
    decision: str | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 20,
) -> Page[QueueItem]:
    """Searched faces, newest first, a page at a time (filters as `list_reviews`)."""
    if decision not in (None, "match", "unknown"):
        raise InvalidArgument(f"decision {decision!r}: expected match or unknown")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidArgument(f"limit {limit}: expected 1 to {MAX_PAGE}")
    offset = decode_cursor(cursor)
    state = UNREVIEWED if unreviewed else None
    with app.sessions() as session:
        person_id = get_person(session, person_ref).id if person_ref else None
        rows, total = first_hits_page(session, person_id, since, decision, state, limit + 1, offset)
        ids = {event.id for _, event in rows}
        history = review_history(session, ids)
        seconds = runner_up_hits(session, ids)
        wanted = {hit.person_id for hit, _ in rows} | {h.person_id for h in seconds.values()}
        wanted |= {r.actual_person_id for reviews in history.values() for r in reviews}
        people = persons_by_id(session, {p for p in wanted if p is not None})
    items = []
    for hit, event in rows:
        reviews = history.get((event.id, hit.face_index, hit.person_id), [])
        second = seconds.get((event.id, hit.face_index))
        in_force = reviews[-1] if reviews else None
        items.append(
            QueueItem(
                str(event.id),
                event.created_at.isoformat(),
                event.actor,
                event.query_name,
                hit.face_index,
                Decision(hit.decision),
                hit.score,
                event.threshold,
                (event.parameters or {}).get("decision_rule"),
                _person(people, hit.person_id),
                [NearFace(str(face_id), float(score)) for face_id, score in (hit.faces or [])]
                if hit.person_id in people
                else [],
                None if second is None else RunnerUp(_person(people, second.person_id), second.score),
                ReviewState.of(in_force),
                _external_id(people, in_force.actual_person_id) if in_force else None,
                [_past(review, people) for review in reversed(reviews[:-1])],
            )
        )
    return page_of(items, offset, limit, total)


def _person(people: dict[uuid.UUID, Person], person_id: uuid.UUID | None) -> ReviewPerson | None:
    person = people.get(person_id) if person_id else None
    return None if person is None else ReviewPerson(str(person.id), person.external_id, person.display_name)


def _external_id(people: dict[uuid.UUID, Person], person_id: uuid.UUID | None) -> str | None:
    person = people.get(person_id) if person_id else None
    return None if person is None else person.external_id


def _past(review: MatchReview, people: dict[uuid.UUID, Person]) -> PastReview:
    return PastReview(
        ReviewVerdict(review.verdict),
        review.actor,
        review.created_at.isoformat(),
        review.note,
        _external_id(people, review.actual_person_id),
    )


def face_reviews(app: App, search_ref: str, face_index: int) -> list[PastReview]:
    """Every review of one searched face (any candidate), newest first: what a page shows after a review."""
    try:
        search_id = uuid.UUID(search_ref)
    except ValueError:
        raise InvalidArgument(f"search id {search_ref!r} is not a search id (a uuid)") from None
    with app.sessions() as session:
        history = review_history(session, [search_id])
        reviews = sorted(
            (r for (_, index, _), rs in history.items() if index == face_index for r in rs),
            key=lambda r: (r.created_at, r.id),
        )
        people = persons_by_id(session, {r.actual_person_id for r in reviews if r.actual_person_id})
    return [_past(review, people) for review in reversed(reviews)]
