"""Reading the search log (`identity searches list`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from identity.app.core import App
from identity.errors import InvalidArgument
from identity.services.paging import Page, decode_cursor, page_of
from identity.store.sql.persons import get_person
from identity.store.sql.reviews import REVIEW_STATES, searches_by_review
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
        events = page.items
        reviews = searches_by_review(session, [e.id for e in events]) if events else {}
        best = {}
        if events:
            for hit in top_hits(session, [e.id for e in events]):
                if hit.search_id not in best or _score(hit) > _score(best[hit.search_id]):
                    best[hit.search_id] = hit
    return page.map(
        lambda e: LoggedSearch(
            search_id=str(e.id),
            when=e.created_at.isoformat(),
            actor=e.actor,
            query_name=e.query_name,
            query_sha256=e.query_sha256,
            faces=e.face_count,
            not_searched=_not_searched(e),
            threshold=e.threshold,
            best=round(best[e.id].score, 4) if e.id in best and best[e.id].score is not None else None,
            decision=Decision(best[e.id].decision) if e.id in best else _outcome_without_hits(e),
            review=_summary(reviews.get(e.id)),
        )
    )


def _not_searched(event: SearchEvent) -> int:
    return len(event.parameters.get(NOT_SEARCHED, []))


def _outcome_without_hits(event: SearchEvent) -> Decision:
    """A search no face of which was ranked: nothing searched, or no one in the gallery to rank."""
    return NOT_SEARCHED if event.face_count and _not_searched(event) == event.face_count else UNKNOWN


def _summary(states: set[str] | None) -> str | None:
    if not states:
        return None
    return next(iter(states)) if len(states) == 1 else "mixed"


def _score(hit: SearchHit) -> float:
    """An erased person's hit has no score: it never wins "best" over a scored one."""
    return float("-inf") if hit.score is None else hit.score
