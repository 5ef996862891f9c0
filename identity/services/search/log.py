"""Reading the search log (`identity searches list`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from identity.app.core import App
from identity.errors import InvalidArgument, NotFound
from identity.services.paging import Page, decode_cursor, page_of
from identity.store.sql.persons import get_person, persons_by_id
from identity.store.sql.reviews import (
    REVIEW_STATES,
    UNREVIEWED,
    ReviewVerdict,
    latest_reviews,
    searches_by_review,
)
from identity.store.sql.searches import (
    MATCH,
    NOT_SEARCHED,
    UNKNOWN,
    Decision,
    count_searches,
    recent_searches,
    top_hits,
)
from identity.store.sql.tables import SearchEvent, SearchHit

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

KIND, SEARCH, VERIFY = "kind", "search", "verify"  # parameters["kind"]: what the log entry records
DECISIONS = tuple(Decision)  # a face's outcome (identity.services.search.identify)
DECISION_FILTERS = (MATCH, UNKNOWN)  # the log's filter: some face matched, or none did


@dataclass(frozen=True)
class LoggedSearch:
    """One search as the log holds it, with the best score and decision among its faces' top hits
    (`not_searched` when no face was searched: all were below the search minimum)."""

    search_id: str
    when: str  # ISO 8601, UTC
    actor: str
    query_name: str | None
    query_sha256: str | None  # None once redacted by an erasure
    faces: int
    not_searched: int  # faces too small to be searched (identity.services.search.identify)
    threshold: float | None
    best: float | None
    decision: Decision
    review: str | None  # of its matched faces: confirmed, rejected, unreviewed, or mixed; None without a match
    matched: list[str]  # external ids of the persons its faces were decided to match, by face; erased ones left out
    kind: str  # search, or verify (a 1:1 comparison: of two photos, its score and decision are its own)


@dataclass(frozen=True)
class LoggedFace:
    """One ranked face of a logged search: its first candidate (the one a match names) and that hit's review."""

    face_index: int
    decision: Decision
    score: float | None  # the first candidate's similarity; None once erased
    person: str | None  # the first candidate's external id; None once erased
    person_id: str | None
    review: ReviewVerdict


@dataclass(frozen=True)
class SearchDetail:
    search: LoggedSearch
    faces: list[LoggedFace]  # the faces that were ranked, by index (not_searched ones have no hit)


def list_searches(
    app: App,
    person_ref: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    actor: str | None = None,
    decision: str | None = None,
    review: str | None = None,
    cursor: str | None = None,
) -> Page[LoggedSearch]:
    """Newest first, filtered by person, time, actor, decision (`match`: some face matched; `unknown`:
    none did, including searches whose faces were all too small to search) and review (some matched face's
    review is `confirmed`, `rejected`, or `unreviewed`), a page of `limit` at a time."""
    if decision not in (None, *DECISION_FILTERS):
        raise InvalidArgument(f"decision {decision!r}: expected {' or '.join(DECISION_FILTERS)}")
    if review not in (None, *REVIEW_STATES):
        raise InvalidArgument(f"review {review!r}: expected one of {', '.join(REVIEW_STATES)}")
    with app.sessions() as session:
        person_id = get_person(session, person_ref).id if person_ref else None
        matched = None if decision is None else decision == MATCH
        offset = decode_cursor(cursor)
        rows = recent_searches(session, person_id, since, limit + 1, actor, matched, review, offset)
        page = page_of(rows, offset, limit, count_searches(session, person_id, since, actor, matched, review))
        return Page(_logged(session, page.items), page.next, page.total)


def show_search(app: App, search_ref: str) -> SearchDetail:
    """One logged search and each of its ranked faces' first candidate with the review in force on it."""
    search_id = search_uuid(search_ref)
    with app.sessions() as session:
        event = session.get(SearchEvent, search_id)
        if event is None:
            raise NotFound(f"no search {search_ref} in the search log (identity searches list shows them)")
        [logged] = _logged(session, [event])
        firsts = sorted(top_hits(session, [search_id]), key=lambda h: h.face_index)
        people = persons_by_id(session, {h.person_id for h in firsts if h.person_id})
        reviews = latest_reviews(session, [search_id])
    faces = []
    for hit in firsts:
        person = people.get(hit.person_id) if hit.person_id else None
        review = reviews.get((search_id, hit.face_index, hit.person_id))
        faces.append(
            LoggedFace(
                hit.face_index,
                Decision(hit.decision),
                hit.score,
                person.external_id if person else None,
                str(person.id) if person else None,
                ReviewVerdict(review.verdict) if review else UNREVIEWED,
            )
        )
    return SearchDetail(logged, faces)


def _logged(session: Session, events: Sequence[SearchEvent]) -> list[LoggedSearch]:
    reviews = searches_by_review(session, [e.id for e in events]) if events else {}
    best: dict[uuid.UUID, SearchHit] = {}
    firsts = top_hits(session, [e.id for e in events]) if events else []
    for hit in firsts:
        if hit.search_id not in best or _score(hit) > _score(best[hit.search_id]):
            best[hit.search_id] = hit
    matches = sorted((h for h in firsts if h.decision == MATCH and h.person_id), key=lambda h: h.face_index)
    people = persons_by_id(session, {h.person_id for h in matches if h.person_id})
    matched: dict[uuid.UUID, list[str]] = {}
    for hit in matches:
        names = matched.setdefault(hit.search_id, [])
        if hit.person_id in people and people[hit.person_id].external_id not in names:
            names.append(people[hit.person_id].external_id)
    return [
        LoggedSearch(
            search_id=str(e.id),
            when=e.created_at.isoformat(),
            actor=e.actor,
            query_name=e.query_name,
            query_sha256=e.query_sha256,
            faces=e.face_count,
            not_searched=_not_searched(e),
            threshold=e.threshold,
            best=round(best[e.id].score, 4) if e.id in best and best[e.id].score is not None else _own_score(e),
            decision=Decision(best[e.id].decision) if e.id in best else _outcome_without_hits(e),
            review=_summary(reviews.get(e.id)),
            matched=matched.get(e.id, []),
            kind=e.parameters.get(KIND, SEARCH),
        )
        for e in events
    ]


def search_uuid(ref: str) -> uuid.UUID:
    try:
        return uuid.UUID(ref)
    except ValueError:
        raise InvalidArgument(
            f"search id {ref!r} is not a search id (a uuid, as identity searches list shows)"
        ) from None


def _not_searched(event: SearchEvent) -> int:
    return len(event.parameters.get(NOT_SEARCHED, []))


def _own_score(event: SearchEvent) -> float | None:
    """A verification of two photos ranks no person: its score is the one it recorded."""
    score = event.parameters.get("score") if event.parameters.get(KIND) == VERIFY else None
    return round(float(score), 4) if score is not None else None


def _outcome_without_hits(event: SearchEvent) -> Decision:
    """A search no face of which was ranked: nothing searched, or no one in the gallery to rank; a verification
    of two photos: the decision it recorded."""
    if event.parameters.get(KIND) == VERIFY:
        return MATCH if event.parameters.get("decision") == MATCH else UNKNOWN
    return NOT_SEARCHED if event.face_count and _not_searched(event) == event.face_count else UNKNOWN


def _summary(states: set[str] | None) -> str | None:
    if not states:
        return None
    return next(iter(states)) if len(states) == 1 else "mixed"


def _score(hit: SearchHit) -> float:
    """An erased person's hit has no score: it never wins "best" over a scored one."""
    return float("-inf") if hit.score is None else hit.score
