"""POST /v1/search, GET /v1/searches and GET /v1/persons/{id}/audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from identity.api import schemas
from identity.api.auth import caller
from identity.api.budget import check_count
from identity.api.context import ApiContext, Ctx
from identity.api.contract import keyed
from identity.api.errors import ApiError
from identity.api.images_in import ImageField, ImagesIn, analysed_images, images_body, request_body
from identity.api.limits import Deadline, deadline_of
from identity.api.listing import CURSOR, listed
from identity.api.params import filters, in_thread
from identity.serialize import to_json
from identity.services.access.keys import READ, SEARCH, KeyRecord
from identity.services.records.audit import audit_person
from identity.services.search.identify import SearchFailure, SearchOptions
from identity.services.search.log import list_searches

router = APIRouter(prefix="/v1", tags=["search"])


class SearchFields(BaseModel):
    """POST /v1/search's fields besides its images."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field of a JSON body is a 422, not ignored

    top_k: int = Field(5, ge=1, le=100)
    threshold: float | None = None
    filter: list[str] | None = Field(None, description="key=value; a key given twice matches either value")
    largest_face: bool = False


SEARCH_IMAGES = (ImageField("image", many=True, description="one or more photos"),)


@router.post(
    "/search",
    response_model=schemas.SearchResponse,
    openapi_extra=request_body(SEARCH_IMAGES, SearchFields),
    **keyed("searchFaces", body="images"),
)
async def search(
    body: ImagesIn = Depends(images_body(SEARCH_IMAGES, SearchFields)),
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(SEARCH)),
    deadline: Deadline = Depends(deadline_of),
) -> dict[str, Any]:
    """Who is in these photos: as `identity search --json`; unusable images go into `errors`.

    The photos come as multipart uploads, or as base64 strings in a JSON body (`{"image": [...], "top_k": 3}`).
    At most IDENTITY_API__MAX_IMAGES_PER_REQUEST photos and IDENTITY_API__MAX_PIXELS_PER_REQUEST
    pixels in all (413 beyond); past IDENTITY_API__REQUEST_DEADLINE_SECONDS, 503 with Retry-After."""
    fields: SearchFields = body.fields
    saved = body.all()
    check_count(len(saved), ctx.settings.api)
    options = SearchOptions(
        top_k=fields.top_k,
        threshold=fields.threshold,
        filters=filters(fields.filter),
        largest_face_only=fields.largest_face,
        actor=key.name,
    )
    analysed = await analysed_images(ctx, saved, deadline)
    results, errors = [], []
    for (name, path), outcome in zip(saved, analysed):
        deadline.check("searching the faces")
        # Named by the upload, not the scratch file.
        found = await in_thread(ctx.search, path, outcome, name, options)
        if isinstance(found, SearchFailure):
            errors.append(to_json(found))
        else:
            results.append(to_json(found))
    if not results:
        raise ApiError(422, errors[0]["error"] if len(errors) == 1 else "no image could be searched", errors)
    return {"results": results, "errors": errors}


@router.get("/searches", response_model=schemas.LoggedSearchPage, **keyed("listSearches", 404, 422))
def searches(
    person: str | None = None,
    since: datetime | None = None,
    actor: str | None = None,
    decision: schemas.DecisionFilter | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = CURSOR,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(READ)),
) -> dict[str, Any]:
    """The search log, newest first, filtered by person, actor, time and decision, a page at a time."""
    wanted = decision.value if decision else None
    return listed(list_searches(ctx.core, person, since, limit, actor, wanted, cursor=cursor))


@router.get("/persons/{person}/audit", response_model=schemas.Audit, **keyed("getPersonAudit", 404, 422))
def audit(person: str, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(READ))) -> dict[str, Any]:
    """What is held on a person, which searches returned them, look-alikes and outliers (`identity audit --json`)."""
    return to_json(audit_person(ctx.core, person, key.name))
