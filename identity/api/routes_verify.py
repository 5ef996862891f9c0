"""POST /v1/verify (1:1), POST /v1/detect, GET /v1/faces/{id} and its thumbnail.

Verify and detect take their images as multipart uploads or base64 in a JSON body
(identity.api.images_in), through the inference threads as a search does, under the same limits.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from identity.api import schemas
from identity.api.auth import caller
from identity.api.budget import check_count
from identity.api.context import ApiContext, Ctx
from identity.api.contract import keyed
from identity.api.derive import derived
from identity.api.errors import ApiError
from identity.api.images_in import ImageField, ImagesIn, analysed_images, images_body, request_body
from identity.api.limits import Deadline, deadline_of
from identity.api.params import in_thread
from identity.serialize import to_json
from identity.services.access.keys import READ, SEARCH, KeyRecord
from identity.services.records import faces as face_records
from identity.services.records.faces import face_record, face_thumbnail
from identity.services.search import verify as verification
from identity.services.search.detect import detected
from identity.services.search.verify import VerifyImage, verify

router = APIRouter(prefix="/v1", tags=["search"])

JPEG = {"description": "the face's stored JPEG thumbnail", "content": {"image/jpeg": {"schema": {"type": "string"}}}}

VerifiedFace = derived("VerifiedFace", verification.VerifiedFace, quality=dict[str, Any])
VerifyResult = derived(
    "VerifyResult",
    verification.VerifyResult,
    "A 1:1 verification, as `identity verify --json`: the faces compared, the score, and the decision.",
    face_a=VerifiedFace,
    face_b=VerifiedFace | None,
    person=schemas.PersonRef | None,
    best_face=schemas.MatchedFace | None,
)
FaceRecord = derived("FaceRecord", face_records.FaceRecord, person=schemas.PersonRef)


class VerifyFields(BaseModel):
    """POST /v1/verify's fields besides its images: a second image or a person, one of them."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field of a JSON body is a 422, not ignored

    person: str | None = Field(None, description="external id or uuid of the person to verify against")
    face_index_a: int | None = Field(None, ge=0, description="which face of image_a; default: the largest")
    face_index_b: int | None = Field(None, ge=0, description="which face of image_b; default: the largest")


class DetectFields(BaseModel):
    """POST /v1/detect takes only images."""

    model_config = ConfigDict(extra="forbid")


class DetectedFace(BaseModel):
    bbox: list[float]
    landmarks: list[list[float]] = Field(description="5 x [x, y]: eyes, nose, mouth corners")
    detector: str
    det_score: float
    iod_px: float
    blur: float
    yaw_deg: float
    roll_deg: float
    rejections: list[str]
    ok: bool


class DetectedImage(BaseModel):
    """One image as `identity faces detect --json` gives it; an unreadable one has `error` and no faces."""

    image: str
    error: str | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    model_source: str | None = None
    pack_detector: str | None = None
    detector: str | None = None
    capped: int | None = None
    scan_limited_px: float | None = None
    faces: list[DetectedFace]


class DetectResponse(BaseModel):
    model: str
    images: list[DetectedImage]


VERIFY_IMAGES = (
    ImageField("image_a", description="the photo whose face is verified"),
    ImageField("image_b", required=False, description="a second photo (or give person)"),
)
DETECT_IMAGES = (ImageField("image", many=True, description="one or more photos"),)


@router.post(
    "/verify",
    response_model=VerifyResult,
    openapi_extra=request_body(VERIFY_IMAGES, VerifyFields),
    **keyed("verifyFaces", 404, body="images"),
)
async def verify_route(
    body: ImagesIn = Depends(images_body(VERIFY_IMAGES, VerifyFields)),
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(SEARCH)),
    deadline: Deadline = Depends(deadline_of),
) -> dict[str, Any]:
    """Are two faces one person, or is a face a given person: as `identity verify --json`, recorded in the
    search log (and, against a person, in their audit). Images as multipart or base64 JSON
    (`{"image_a": "...", "person": "P"}`)."""
    fields: VerifyFields = body.fields
    saved = body.all()
    analysed = await analysed_images(ctx, saved, deadline)
    [a, *b] = [
        VerifyImage(str(path), index, found, name)
        for (name, path), (_, found), index in zip(saved, analysed, (fields.face_index_a, fields.face_index_b))
    ]
    await in_thread(ctx.deployment)  # prepared for writes once (the App keeps it): the service's read finds it
    result = await in_thread(verify, ctx.core, a, b[0] if b else None, fields.person, key.name)
    return to_json(result)


@router.post(
    "/detect",
    response_model=DetectResponse,
    openapi_extra=request_body(DETECT_IMAGES, DetectFields),
    **keyed("detectFaces", body="images"),
)
async def detect_route(
    body: ImagesIn = Depends(images_body(DETECT_IMAGES, DetectFields)),
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(SEARCH)),
    deadline: Deadline = Depends(deadline_of),
) -> dict[str, Any]:
    """The faces in each image: boxes, landmarks, quality and the detector, as `identity faces detect --json`;
    an unreadable image is listed with its `error` (422 when none could be read)."""
    saved = body.all()
    check_count(len(saved), ctx.settings.api)
    analysed = await analysed_images(ctx, saved, deadline)
    report = await in_thread(detected, ctx.core, [(name, found) for (name, _), (_, found) in zip(saved, analysed)])
    records = report.as_list()
    if all("error" in record for record in records):
        raise ApiError(422, records[0]["error"] if len(records) == 1 else "no image could be read", records)
    return {"model": report.model, "images": records}


@router.get("/faces/{face}", response_model=FaceRecord, tags=["persons"], **keyed("getFace", 404, 422))
def face(face: str, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(READ))) -> dict[str, Any]:
    """One enrolled face (an id from an audit or a search hit): its person, photo, box, landmarks and quality."""
    return to_json(face_record(ctx.core, face))


@router.get(
    "/faces/{face}/thumbnail",
    response_class=Response,
    tags=["persons"],
    **keyed("getFaceThumbnail", 404, 422, ok=JPEG),
)
def thumbnail(face: str, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(READ))) -> Response:
    """The face's stored thumbnail (its aligned crop), never the source photo."""
    return Response(face_thumbnail(ctx.core, face), media_type="image/jpeg")
