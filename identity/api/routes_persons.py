"""Persons (list, create, read, update, erase, merge), their faces (move, delete) and synchronous enrollment."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict

from identity.api import schemas
from identity.api.auth import caller
from identity.api.budget import check_pixels
from identity.api.context import ApiContext, Ctx
from identity.api.contract import keyed
from identity.api.errors import ApiError
from identity.api.idempotency import IDEMPOTENCY_KEY, idempotent, json_digest, upload_digest
from identity.api.images_in import ImageField, ImagesIn, images_body, keep, request_body
from identity.api.listing import CURSOR, listed
from identity.api.params import filters, in_thread
from identity.errors import NotFound
from identity.serialize import to_json
from identity.services.access.keys import ADMIN, ENROLL, READ, KeyRecord
from identity.services.curation.edits import delete_face, delete_person, merge_persons, move_face
from identity.services.enrollment.inputs import from_files
from identity.services.enrollment.run import enroll
from identity.services.enrollment.uploads import new_upload_folder
from identity.services.records.persons import add_person, list_people, person_named, show_person, update_person

router = APIRouter(prefix="/v1", tags=["persons"])
MAX_SYNC_IMAGES = 10  # more belong in POST /v1/enrollments


@router.get("/persons", response_model=schemas.PersonPage, **keyed("listPersons", 422))
def persons(
    q: str | None = Query(None, description="text in the external id, name or attributes, matched literally"),
    external_id: str | None = Query(None, description="exactly this external id (`/` included: a path takes the uuid)"),
    attribute: list[str] | None = Query(None, description="key=value; a key given twice matches either value"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = CURSOR,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(READ)),
) -> dict[str, Any]:
    """People by external id, a page at a time."""
    wanted = {k: v if isinstance(v, list) else [v] for k, v in filters(attribute).items()}
    return listed(list_people(ctx.core, q, limit, cursor, wanted or None, external_id))


@router.post("/persons", response_model=schemas.Person, status_code=201, **keyed("createPerson", 409, body="json"))
def create(
    person: schemas.PersonCreate,
    request: Request,
    idempotency_key: str | None = IDEMPOTENCY_KEY,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(ENROLL)),
) -> Any:
    with idempotent(ctx, key, request, idempotency_key, json_digest(person), schemas.Person) as attempt:
        if attempt.replay:
            return attempt.replay
        record = add_person(ctx.core, person.external_id, person.display_name, person.attributes)
        return attempt.answer(to_json(record), 201, uuid.UUID(record.id))


@router.get("/persons/{person}", response_model=schemas.Person, **keyed("getPerson", 404, 422))
def read(person: str, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(READ))) -> dict[str, Any]:
    """One person by uuid or external id (an external id holding `/` is found by its uuid, or by
    GET /v1/persons?external_id=)."""
    return to_json(show_person(ctx.core, person))


@router.patch("/persons/{person}", response_model=schemas.Person, **keyed("updatePerson", 404, 409, body="json"))
def update(
    person: str, change: schemas.PersonUpdate, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ENROLL))
) -> dict[str, Any]:
    return to_json(update_person(ctx.core, person, change.display_name, change.attributes, change.remove))


@router.delete(
    "/persons/{person}",
    response_model=schemas.Erasure,
    response_model_exclude_unset=True,
    **keyed("erasePerson", 404, 422),
)
def erase(person: str, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ADMIN))) -> dict[str, Any]:
    """Erase a person from every store (as `identity person delete`); a repeat reports the first erasure."""
    return to_json(delete_person(ctx.core, person, key.name))


@router.post(
    "/persons/{person}/merge", response_model=schemas.MergeResult, **keyed("mergePersons", 404, 409, body="json")
)
def merge(
    person: str, merge: schemas.Merge, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ADMIN))
) -> dict[str, Any]:
    """Move every face and search hit of `absorb` to this person, then remove `absorb`."""
    return to_json(merge_persons(ctx.core, person, merge.absorb, key.name))


@router.post("/faces/{face}/move", response_model=schemas.FaceMoveResult, **keyed("moveFace", 404, 409, body="json"))
def move(
    face: str, move: schemas.FaceMove, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ADMIN))
) -> dict[str, Any]:
    return to_json(move_face(ctx.core, face, move.to, key.name))


@router.delete(
    "/faces/{face}", response_model=schemas.Erasure, response_model_exclude_unset=True, **keyed("deleteFace", 404, 422)
)
def remove_face(face: str, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ADMIN))) -> dict[str, Any]:
    return to_json(delete_face(ctx.core, face, key.name))


class _NoFields(BaseModel):
    model_config = ConfigDict(extra="forbid")


ENROLL_IMAGES = (ImageField("image", many=True, description=f"up to {MAX_SYNC_IMAGES} photos"),)


@router.post(
    "/persons/{person}/faces",
    response_model=schemas.EnrollmentSummary,
    openapi_extra=request_body(ENROLL_IMAGES, _NoFields),
    **keyed("enrollPhotos", 409, body="images"),
)
async def enroll_photos(
    person: str,
    request: Request,
    body: ImagesIn = Depends(images_body(ENROLL_IMAGES, _NoFields)),
    idempotency_key: str | None = IDEMPOTENCY_KEY,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(ENROLL)),
) -> Any:
    """Enroll a few photos of one person now, each ending enrolled, rejected, failed, duplicate or conflict.

    Photos as multipart uploads or base64 in a JSON body (`{"image": [...]}`). A copy that becomes no
    person's photo is deleted by the job loop (services.uploads); the photos' pixels count against
    IDENTITY_API__MAX_PIXELS_PER_REQUEST as a search's do."""
    spooled = body.all()
    if len(spooled) > MAX_SYNC_IMAGES:
        raise ApiError(
            422, f"{len(spooled)} photos: at most {MAX_SYNC_IMAGES} here; queue more with POST /v1/enrollments"
        )
    folder = new_upload_folder(ctx.settings)  # kept: they are the enrolled photos (erasure deletes them)
    try:
        saved = keep(spooled, folder)
        # the bytes are read again only for a request that may be retried
        digest = (
            await in_thread(upload_digest, [name for name, _ in saved], [path for _, path in saved])
            if idempotency_key
            else ""
        )
        with idempotent(ctx, key, request, idempotency_key, digest, schemas.EnrollmentSummary) as attempt:
            if attempt.replay:
                shutil.rmtree(folder, ignore_errors=True)  # the first request's copies are the enrolled ones
                return attempt.replay
            await in_thread(check_pixels, [path for _, path in saved], ctx.settings.api)
            names = {str(path.resolve()): name for name, path in saved}
            run = await in_thread(_enroll, ctx, person, [path for _, path in saved])
            record = to_json(run)
            record["images"] = [
                {
                    "image": names.get(r.source_path, Path(r.source_path).name),
                    "external_id": r.external_id,
                    "outcome": r.outcome,
                    "reason": r.reason,
                    "faces_found": r.faces_found,
                }
                for r in run.summary.results
            ]
            return attempt.answer(record, 200, person_named(ctx.core, person))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _enroll(ctx: ApiContext, person: str, paths: list[Path]) -> Any:
    try:
        external_id = show_person(ctx.core, person).external_id  # a uuid names an existing person
    except NotFound:
        external_id = person  # a new person, created by the enrollment
    return enroll(ctx.core, from_files(external_id, paths), analyse=ctx.inference.analyse)
