"""Match review: a reviewer confirms or rejects a search's match, and the decisions become a measure.

A review is about one face of one logged search and one of its candidates (by default
the first, the one the decision named). Reviews are append-only: a later review of the
same face and person supersedes the earlier, and both stay. A rejection sticks: when the
same image (same bytes, same model) is searched again, the rejected person is left out
of that face's decision (search says so in a warning). `report_reviews` turns the
reviewed `match` decisions into the deployment's measured precision, with a Wilson 95%
interval, per model and threshold.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from identity.app.actor import resolve_actor
from identity.app.core import App
from identity.errors import InvalidArgument, NotFound
from identity.serialize import json_field
from identity.services.review.other_person import enroll_searched_face, stored_face
from identity.services.search.log import search_uuid
from identity.store.sql.audit_events import record_audit_event
from identity.store.sql.db import transaction
from identity.store.sql.model_rows import models_with_row_ids
from identity.store.sql.persons import get_person, persons_by_id
from identity.store.sql.reviews import (
    REJECTED,
    UNREVIEWED,
    VERDICTS,
    ReviewVerdict,
    add_review,
    face_hits,
    first_hits,
    latest_reviews,
)
from identity.store.sql.searches import Decision
from identity.store.sql.tables import MatchReview, SearchEvent, SearchHit

Z_95 = 1.959964  # two-sided 95% normal quantile, for the Wilson interval


@dataclass(frozen=True)
class ReviewState:
    """The review in force on one hit."""

    verdict: ReviewVerdict  # confirmed / rejected
    by: str
    at: str  # ISO 8601
    note: str | None

    @classmethod
    def of(cls, review: MatchReview | None) -> ReviewState | None:
        return (
            None
            if review is None
            else cls(ReviewVerdict(review.verdict), review.actor, review.created_at.isoformat(), review.note)
        )


@dataclass(frozen=True)
class HitReview:
    """A hit's review as every answer words it (API, CLI --json, audit, search log): `review` is always one of
    unreviewed|confirmed|rejected, never null; who reviewed it, when and why beside it."""

    review: ReviewVerdict
    reviewed_by: str | None
    reviewed_at: str | None
    review_note: str | None


def review_fields(state: ReviewState | None) -> HitReview:
    if state is None:
        return HitReview(UNREVIEWED, None, None, None)
    return HitReview(state.verdict, state.by, state.at, state.note)


# A hit's `review` field: written as HitReview's four keys in its place.
REVIEW_JSON = json_field(flatten=True, encode=review_fields)


@dataclass(frozen=True)
class ReviewRow:
    """One searched face's decision (its first candidate), and the review in force on it."""

    search_id: str
    when: str
    searched_by: str
    query_name: str | None
    face_index: int
    person: str | None  # external id; None once erased
    score: float | None
    decision: Decision
    person_id: str | None  # the person's uuid, which names them in a URL whatever their external id holds
    review: ReviewState | None = field(default=None, metadata=REVIEW_JSON)


@dataclass(frozen=True)
class Review:
    """A review just recorded."""

    review_id: int
    search_id: str
    face_index: int
    person: str
    rank: int
    decision: Decision  # what the search decided for that face
    verdict: ReviewVerdict
    actor: str
    at: str
    note: str | None
    superseded: ReviewVerdict | None  # the verdict this one replaces, if any
    superseded_by: str | None = None  # who gave the verdict this one replaces
    superseded_at: str | None = None
    actual_person: str | None = field(default=None, metadata=json_field(omit_if_none=True))  # who it really is
    enrolled: str | None = field(default=None, metadata=json_field(omit_if_none=True))  # the face's enrollment
    enroll_reason: str | None = field(default=None, metadata=json_field(omit_if_none=True))


def list_reviews(
    app: App,
    person_ref: str | None = None,
    unreviewed: bool = False,
    decision: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[ReviewRow]:
    """Searched faces, newest first, with the review in force on the person each decision named."""
    if decision not in (None, "match", "unknown"):
        raise InvalidArgument(f"decision {decision!r}: expected match or unknown")
    with app.sessions() as session:
        person_id = get_person(session, person_ref).id if person_ref else None
        rows = first_hits(session, person_id, since, decision, UNREVIEWED if unreviewed else None, limit)
        reviews = latest_reviews(session, {event.id for _, event in rows})
        people = persons_by_id(session, {hit.person_id for hit, _ in rows if hit.person_id})
    return [
        ReviewRow(
            str(event.id),
            event.created_at.isoformat(),
            event.actor,
            event.query_name,
            hit.face_index,
            people[hit.person_id].external_id if hit.person_id in people else None,
            hit.score,
            Decision(hit.decision),
            str(hit.person_id) if hit.person_id in people else None,
            ReviewState.of(reviews.get((event.id, hit.face_index, hit.person_id))),
        )
        for hit, event in rows
    ]


def review_match(
    app: App,
    search_ref: str,
    face_index: int,
    verdict: str,
    person_ref: str | None = None,
    note: str | None = None,
    actor: str | None = None,
    actual_person_ref: str | None = None,
    enroll: bool = False,
) -> Review:
    """Record that face `face_index` of a search is (confirmed) or is not (rejected) a candidate person:
    `person_ref`, else the face's first candidate. A rejection may name who the face really is (an enrolled
    person, `actual_person_ref`), and `enroll` then enrolls the searched face for them from its stored
    thumbnail (identity.services.review.other_person)."""
    if verdict not in VERDICTS:
        raise InvalidArgument(f"verdict {verdict!r}: expected one of {', '.join(VERDICTS)}")
    if actual_person_ref is not None and verdict != REJECTED:
        raise InvalidArgument("only a rejection names who the face really is (--actual goes with reject)")
    if enroll and actual_person_ref is None:
        raise InvalidArgument("enrolling the face needs the person it really is (--actual PERSON)")
    search_id = search_uuid(search_ref)
    who = resolve_actor(actor)
    jpeg = stored_face(app, str(search_id), face_index) if enroll else None  # refused before the review is recorded
    with transaction(app.sessions) as session:
        event = session.get(SearchEvent, search_id)
        if event is None:
            raise NotFound(f"no search {search_ref} in the search log (identity searches list shows them)")
        if not 0 <= face_index < event.face_count:
            raise InvalidArgument(
                f"search {search_ref} has {event.face_count} face(s); face index {face_index} "
                f"is out of range" + (f" (0 to {event.face_count - 1})" if event.face_count else "")
            )
        hits = face_hits(session, search_id, face_index)
        hit = _reviewed_hit(session, hits, search_ref, face_index, person_ref)
        earlier = latest_reviews(session, [search_id]).get((search_id, face_index, hit.person_id))
        person = persons_by_id(session, [hit.person_id])[hit.person_id]
        actual = get_person(session, actual_person_ref) if actual_person_ref is not None else None
        if actual is not None and actual.id == person.id:
            raise InvalidArgument(
                f"{person.external_id} is the person rejected: the actual person must be another one (or confirm)"
            )
        review = add_review(
            session,
            MatchReview(
                actor=who,
                search_id=search_id,
                face_index=face_index,
                person_id=hit.person_id,
                verdict=verdict,
                note=note or None,
                actual_person_id=actual.id if actual else None,
            ),
        )
        details: dict[str, Any] = {
            "search_id": str(search_id),
            "face_index": face_index,
            "rank": hit.rank,
            "decision": hit.decision,
        }
        record_audit_event(
            session, who, f"review {verdict}", person_id=person.id, subject=person.external_id, details=details
        )
        if actual is not None:  # their own event: erasing them tokenises it, as every event of theirs
            record_audit_event(
                session,
                who,
                "review named actual person",
                person_id=actual.id,
                subject=actual.external_id,
                details=details,
            )
        done = Review(
            review.id,
            str(search_id),
            face_index,
            person.external_id,
            hit.rank,
            Decision(hit.decision),
            ReviewVerdict(verdict),
            who,
            review.created_at.isoformat(),
            review.note,
            ReviewVerdict(earlier.verdict) if earlier else None,
            earlier.actor if earlier else None,
            earlier.created_at.isoformat() if earlier else None,
            actual.external_id if actual else None,
        )
    if jpeg is None or actual is None:
        return done
    # After the review's commit: the verdict stands whatever the enrollment does.
    enrolled = enroll_searched_face(app, str(search_id), face_index, jpeg, actual.external_id)
    with transaction(app.sessions) as session:
        record_audit_event(
            session,
            who,
            "review enrolled face",
            person_id=actual.id,
            subject=actual.external_id,
            details={"search_id": str(search_id), "face_index": face_index, "outcome": enrolled.outcome},
        )
    return dataclasses.replace(done, enrolled=enrolled.outcome, enroll_reason=enrolled.reason)


def _reviewed_hit(
    session: Any, hits: list[SearchHit], search_ref: str, face_index: int, person_ref: str | None
) -> SearchHit:
    if not hits:
        raise InvalidArgument(f"face {face_index} of search {search_ref} returned no candidate: nothing to review")
    if person_ref is None:
        hit = hits[0]
        if hit.person_id is None:
            raise InvalidArgument(f"face {face_index} of search {search_ref}: its first candidate was erased")
        return hit
    person = get_person(session, person_ref)
    for hit in hits:
        if hit.person_id == person.id:
            return hit
    raise InvalidArgument(
        f"{person.external_id} was not among the candidates of face {face_index} of search {search_ref}"
    )


# -- the report -------------------------------------------------------------------------------------


@dataclass
class PrecisionRow:
    """Reviewed `match` decisions of one model at one threshold (or all of them: model and threshold None)."""

    model: str | None
    threshold: float | None
    matches: int = 0  # match decisions made
    reviewed: int = 0
    confirmed: int = 0
    rejected: int = 0
    precision: float | None = None  # confirmed / reviewed
    interval: tuple[float, float] | None = None  # Wilson 95% (a list in JSON)

    def add(self, verdict: str | None) -> None:
        self.matches += 1
        if verdict is not None:
            self.reviewed += 1
            self.confirmed += verdict == "confirmed"
            self.rejected += verdict == "rejected"

    def finish(self) -> PrecisionRow:
        if self.reviewed:
            self.precision = round(self.confirmed / self.reviewed, 4)
            self.interval = wilson_interval(self.confirmed, self.reviewed)
        return self


@dataclass(frozen=True)
class ReviewReport:
    since: str | None
    warn_below: float
    overall: PrecisionRow
    groups: list[PrecisionRow]
    warnings: list[str] = field(default_factory=list)


def report_reviews(app: App, since: datetime | None = None, warn_below: float | None = None) -> ReviewReport:
    """The share of reviewed `match` decisions that reviewers confirmed: this deployment's precision of a
    match, per model and threshold and overall, with a Wilson 95% interval; warns below `warn_below`."""
    level = app.settings.review.precision_warning if warn_below is None else warn_below
    if not 0.0 <= level <= 1.0:
        raise InvalidArgument(f"warning level {level} is out of range: a precision is between 0 and 1")
    with app.sessions() as session:
        rows = first_hits(session, since=since, decision="match")
        reviews = latest_reviews(session, {event.id for _, event in rows})
        names = {m.id: m.model_id for m in models_with_row_ids(session, {event.model_id for _, event in rows})}
    overall, groups = PrecisionRow(None, None), {}
    for hit, event in rows:
        review = reviews.get((event.id, hit.face_index, hit.person_id))
        verdict = review.verdict if review else None
        overall.add(verdict)
        key = (names[event.model_id], round(event.threshold, 4))
        groups.setdefault(key, PrecisionRow(*key)).add(verdict)
    report = ReviewReport(
        since.isoformat() if since else None, level, overall.finish(), [groups[key].finish() for key in sorted(groups)]
    )
    for row in [overall, *report.groups] if len(report.groups) > 1 else [overall]:
        if row.precision is not None and row.precision < level:
            where = "overall" if row.model is None else f"{row.model} at threshold {row.threshold}"
            low, high = row.interval or (0.0, 1.0)
            report.warnings.append(
                f"precision of match decisions {where} is {row.precision:.1%} (95% interval {low:.1%} to "
                f"{high:.1%}, {row.reviewed} reviewed), below {level:.0%}: raise the threshold or recalibrate "
                "(identity calibrate --fpir), and look at the rejected matches (identity review list)"
            )
    if overall.matches and not overall.reviewed:
        report.warnings.append(
            f"none of {overall.matches} match decisions has been reviewed yet (identity review confirm|reject)"
        )
    return report


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: sound at small counts and near 0 or 1, where the
    normal approximation gives bounds outside [0, 1] or of zero width."""
    if trials <= 0:
        raise ValueError("trials must be positive")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)
