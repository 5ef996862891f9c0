"""The review UI's review loop: confirm or reject matches, and name or discard clusters of unknown faces."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from identity.api.context import ApiContext, Ctx
from identity.api.flash import flash_message, flashed
from identity.api.ui import Visitor, allowed, checked, render, visitor
from identity.errors import InvalidArgument
from identity.render.cluster_html import cluster_thumbnails
from identity.serialize import to_json
from identity.services.access.keys import ENROLL, READ
from identity.services.clustering.clusters import discard_cluster, list_clusters, name_cluster
from identity.services.paging import decode_cursor, encode_cursor
from identity.services.records.thumbnails import data_uri, face_thumbnails, search_thumbnails
from identity.services.review.matches import review_match
from identity.services.review.queue import PastReview, face_reviews, review_queue

router = APIRouter(prefix="/ui", include_in_schema=False)
FACES_SHOWN = 12  # per cluster on the page
PAGE_SIZE = 20  # review cards per page
FACES_BESIDE = 3  # enrolled faces shown beside the searched one
OTHER = "other"  # the page's third verdict: rejected, naming who the face really is
REJECTED = "rejected"
BACK_KEYS = ("unreviewed", "decision", "cursor")  # what a redirect keeps of the page it came from


@router.get("/reviews", response_class=HTMLResponse)
def reviews(
    request: Request,
    unreviewed: bool = True,
    decision: str | None = "match",
    cursor: str | None = None,
    flash: str | None = None,
    done: str | None = None,
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> HTMLResponse:
    allowed(who, READ)
    page = review_queue(ctx.core, unreviewed=unreviewed, decision=decision or None, cursor=cursor, limit=PAGE_SIZE)
    searched = search_thumbnails(ctx.core, [(item.search_id, item.face_index) for item in page.items])
    enrolled = face_thumbnails(ctx.core, {face.face_id for item in page.items for face in item.faces[:FACES_BESIDE]})
    offset = decode_cursor(cursor)
    filters = {"unreviewed": str(unreviewed).lower(), "decision": decision or ""}
    return render(
        request,
        "reviews.html",
        who.page(
            page=page,
            searched={f"{sid}/{index}": data_uri(jpeg) for (sid, index), jpeg in searched.items()},
            enrolled={face_id: data_uri(jpeg) for face_id, jpeg in enrolled.items()},
            beside=FACES_BESIDE,
            unreviewed=unreviewed,
            decision=decision,
            first=offset + 1,
            here=urlencode({**filters, **({"cursor": cursor} if cursor else {})}),
            next_url=f"/ui/reviews?{urlencode({**filters, 'cursor': page.next})}" if page.next else None,
            previous_url=_previous(filters, offset),
            enroll=who.key.allows(ENROLL),
            flash=flash_message(flash),
            superseded=_superseded(ctx, done),
        ),
    )


@router.post("/reviews", response_model=None)
def review(
    request: Request,
    search_id: Annotated[str, Form()],
    face_index: Annotated[int, Form()],
    verdict: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    note: Annotated[str, Form()] = "",
    actual_person: Annotated[str, Form()] = "",
    enroll: Annotated[bool, Form()] = False,
    back: Annotated[str, Form()] = "",
    then: Annotated[str, Form()] = "",
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> Response:
    """One verdict; `other` is a rejection naming who the face really is. A browser without the page's
    script is sent back to the same page (`back`, its query) at the next card (`then`); the script asks for
    JSON and stays on the page."""
    checked(allowed(who, READ), csrf)
    other = verdict == OTHER
    if other and not actual_person.strip():
        raise InvalidArgument("name the enrolled person the face really is (external id) for Other person")
    if other and enroll:
        allowed(who, ENROLL)
    done = review_match(
        ctx.core,
        search_id,
        face_index,
        REJECTED if other else verdict,
        note=note.strip() or None,
        actor=who.key.name,
        actual_person_ref=actual_person.strip() if other else None,
        enroll=other and enroll,
    )
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(to_json(done))
    query = dict(parse_qsl(back))
    query = {k: v for k, v in query.items() if k in BACK_KEYS}
    query |= {"flash": done.verdict.value, **({"done": f"{done.search_id}/{face_index}"} if done.superseded else {})}
    anchor = f"#{then}" if then.startswith("card-") and then.replace("-", "").isalnum() else ""
    return RedirectResponse(f"/ui/reviews?{urlencode(query)}{anchor}", status_code=303)


def _previous(filters: dict[str, str], offset: int) -> str | None:
    if offset <= 0:
        return None
    earlier = max(0, offset - PAGE_SIZE)
    return f"/ui/reviews?{urlencode({**filters, **({'cursor': encode_cursor(earlier)} if earlier else {})})}"


def _superseded(ctx: ApiContext, done: str | None) -> list[PastReview]:
    """After a review that superseded another: every review of that face, newest first (from the store, never
    text from the URL)."""
    search_id, _, index = (done or "").partition("/")
    if not search_id or not index.isdigit():
        return []
    try:
        return face_reviews(ctx.core, search_id, int(index))
    except InvalidArgument:
        return []


@router.get("/clusters", response_class=HTMLResponse)
def clusters(
    request: Request, flash: str | None = None, ctx: ApiContext = Ctx, who: Visitor = Depends(visitor)
) -> HTMLResponse:
    allowed(who, READ, ENROLL)  # the enroll role names and discards clusters (README, docs/review.md)
    views = [c for c in list_clusters(ctx.core) if c.status in ("open", "edited")]
    thumbs = cluster_thumbnails(ctx.core, views, FACES_SHOWN)
    return render(
        request,
        "clusters.html",
        who.page(
            clusters=views, thumbs=thumbs, shown=FACES_SHOWN, enroll=who.key.allows(ENROLL), flash=flash_message(flash)
        ),
    )


@router.post("/clusters/{cluster}/name")
def name(
    cluster: str,
    external_id: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    display_name: Annotated[str, Form()] = "",
    existing: Annotated[bool, Form()] = False,
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> Response:
    checked(allowed(who, ENROLL), csrf)
    person, new = (external_id.strip(), None) if existing else (None, external_id.strip())
    name_cluster(ctx.core, cluster, person, new, display_name.strip() or None, who.key.name)
    return RedirectResponse(flashed("/ui/clusters", "cluster-named"), status_code=303)


@router.post("/clusters/{cluster}/discard")
def discard(
    cluster: str, csrf: Annotated[str, Form()], ctx: ApiContext = Ctx, who: Visitor = Depends(visitor)
) -> Response:
    checked(allowed(who, ENROLL), csrf)
    discard_cluster(ctx.core, cluster, who.key.name)
    return RedirectResponse(flashed("/ui/clusters", "cluster-discarded"), status_code=303)
