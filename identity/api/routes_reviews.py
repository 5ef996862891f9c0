"""GET /v1/reviews (the review queue, a page at a time) and POST /v1/reviews/{search_id}/{face_index} (a verdict).

The same services as `identity review list|confirm|reject` and the /ui/reviews page. A key that may read
(roles read, audit and above) may review; enrolling the face for the person it really is also needs enroll.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from identity.api.auth import caller
from identity.api.context import ApiContext, Ctx
from identity.api.contract import keyed
from identity.api.derive import derived
from identity.api.listing import CURSOR, listed, page_model
from identity.serialize import to_json
from identity.services.access.keys import ENROLL, READ, Forbidden, KeyRecord
from identity.services.review import matches, queue

router = APIRouter(prefix="/v1", tags=["reviews"])


class Verdict(StrEnum):
    """What a reviewer may say (matches.VERDICTS)."""

    confirmed = "confirmed"
    rejected = "rejected"


class ReviewDecision(StrEnum):
    match = "match"
    unknown = "unknown"


ReviewPerson = derived("ReviewPerson", queue.ReviewPerson)
ReviewItem = derived(
    "ReviewItem",
    queue.QueueItem,
    person=ReviewPerson | None,
    faces=list[derived("NearFace", queue.NearFace)],  # type: ignore[misc]
    runner_up=derived("RunnerUp", queue.RunnerUp, person=ReviewPerson | None) | None,
    review=matches.ReviewVerdict,
    earlier=list[derived("PastReview", queue.PastReview, verdict=Verdict)],  # type: ignore[misc]
)
ReviewPage = page_model("ReviewPage", ReviewItem)
ReviewResult = derived("ReviewResult", matches.Review, verdict=Verdict, superseded=Verdict | None)


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Verdict = Field(description="confirmed: the face is that person; rejected: it is not")
    person: str | None = Field(
        None, max_length=255, description="which candidate (external id or uuid); default: the first"
    )
    note: str | None = Field(None, max_length=2000, description="why (dropped if the person is erased)")
    actual_person: str | None = Field(
        None, max_length=255, description="a rejection only: the enrolled person the face really is"
    )
    enroll: bool = Field(
        False, description="with actual_person: enroll the searched face for them (needs the enroll permission)"
    )


@router.get("/reviews", response_model=ReviewPage, **keyed("listReviews", 404, 422))
def list_reviews(
    person: str | None = Query(None, description="only faces whose first candidate was this person"),
    unreviewed: bool = Query(False, description="only faces not reviewed yet"),
    decision: ReviewDecision | None = None,
    since: datetime | None = None,
    cursor: str | None = CURSOR,
    limit: int = Query(20, ge=1, le=queue.MAX_PAGE),
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(READ)),
) -> dict[str, Any]:
    """Searched faces, newest first, each with the person's nearest enrolled faces, the runner-up and the
    reviews (the one in force and those it superseded)."""
    page = queue.review_queue(ctx.core, person, unreviewed, decision.value if decision else None, since, cursor, limit)
    return listed(page)


@router.post(
    "/reviews/{search_id}/{face_index}",
    response_model=ReviewResult,
    response_model_exclude_unset=True,
    **keyed("reviewMatch", 404, 409, body="json"),
)
def review(
    search_id: str,
    face_index: int,
    body: ReviewBody,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(READ)),
) -> dict[str, Any]:
    """Confirm or reject face `face_index` of a logged search (as `identity review confirm|reject`); a later
    review of the same face and person supersedes (the answer names the one it replaced)."""
    if body.enroll and not key.allows(ENROLL):
        raise Forbidden(f"the key {key.name!r} (role {key.role}) may not enroll faces (enroll needed)")
    done = matches.review_match(
        ctx.core,
        search_id,
        face_index,
        body.verdict.value,
        body.person,
        body.note,
        key.name,
        body.actual_person,
        body.enroll,
    )
    return to_json(done)  # type: ignore[no-any-return]
