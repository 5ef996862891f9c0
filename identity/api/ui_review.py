"""The review UI's review loop: confirm or reject matches, and name or discard clusters of unknown faces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from identity.api.context import ApiContext, Ctx
from identity.api.flash import flash_message, flashed
from identity.api.ui import Visitor, allowed, checked, render, visitor
from identity.render.cluster_html import cluster_thumbnails
from identity.serialize import to_json
from identity.services.access.keys import ENROLL, READ
from identity.services.clustering.clusters import discard_cluster, list_clusters, name_cluster
from identity.services.review.matches import list_reviews, review_match

router = APIRouter(prefix="/ui", include_in_schema=False)
FACES_SHOWN = 12  # per cluster on the page


@router.get("/reviews", response_class=HTMLResponse)
def reviews(
    request: Request,
    unreviewed: bool = True,
    decision: str | None = "match",
    flash: str | None = None,
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> HTMLResponse:
    allowed(who, READ)
    rows = [to_json(r) for r in list_reviews(ctx.core, unreviewed=unreviewed, decision=decision or None, limit=200)]
    return render(
        request,
        "reviews.html",
        who.page(rows=rows, unreviewed=unreviewed, decision=decision, flash=flash_message(flash)),
    )


@router.post("/reviews")
def review(
    search_id: Annotated[str, Form()],
    face_index: Annotated[int, Form()],
    verdict: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    note: Annotated[str, Form()] = "",
    ctx: ApiContext = Ctx,
    who: Visitor = Depends(visitor),
) -> Response:
    checked(allowed(who, READ), csrf)
    done = review_match(ctx.core, search_id, face_index, verdict, note=note.strip() or None, actor=who.key.name)
    return RedirectResponse(flashed("/ui/reviews", done.verdict), status_code=303)


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
