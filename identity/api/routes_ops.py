"""Health, readiness, metrics, the job queue (read, and bulk enrollment queued), and API keys."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from identity.api import schemas
from identity.api.auth import caller
from identity.api.context import ApiContext, Ctx
from identity.api.contract import keyed, public
from identity.api.errors import ApiError
from identity.api.idempotency import IDEMPOTENCY_KEY, idempotent, json_digest, upload_digest
from identity.api.images_in import ImageField, ImagesIn, images_body, keep, request_body
from identity.api.listing import CURSOR, listed
from identity.api.params import in_thread
from identity.api.schemas import CALLBACK_URL
from identity.errors import IdentityError
from identity.serialize import to_json
from identity.services.access.keys import (
    ADMIN,
    ENROLL,
    JOBS,
    KeyRecord,
    create_key,
    list_keys,
    parse_expiry,
    revoke_key,
)
from identity.services.enrollment.inputs import EnrollInputs, UnclearInputs, choose_inputs, from_files
from identity.services.enrollment.run import named_by
from identity.services.enrollment.uploads import remove_uploads, upload_folder
from identity.services.maintenance.store_info import versions
from identity.services.queue.jobs import list_jobs, queue_depth, queue_enrollment
from identity.services.queue.webhooks import list_deliveries
from identity.services.records.persons import person_named

router = APIRouter()
PROMETHEUS_TEXT = {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=303)


@router.get("/healthz", response_model=schemas.Health, tags=["ops"], **public("getHealth"))
def healthz() -> dict[str, str]:
    """The process is alive (no key needed)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=schemas.Ready,
    responses={503: {"model": schemas.Ready}},
    tags=["ops"],
    operation_id="getReadiness",
)
def readyz(ctx: ApiContext = Ctx) -> Any:
    """The database and vector store are reachable, the schema is current and the model loaded (no key needed)."""
    checks: dict[str, str] = {}
    try:
        found = versions(ctx.core)
        checks["schema"] = (
            "ok" if found.schema_database == found.schema_code else f"not current: {found.schema_database}"
        )
        dep = ctx.deployment()
        dep.index.count()
        checks["vector_store"] = "ok"
        dep.pipeline.load()
        checks["model"] = f"ok: {dep.model.model_id}"
    except IdentityError as exc:
        checks["error"] = exc.message
    ready = bool(checks) and all(v.startswith("ok") for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


# response_class Response: with PlainTextResponse the schema would state the JSON errors as text too
@router.get("/metrics", response_class=Response, tags=["ops"], **keyed("getMetrics", ok=PROMETHEUS_TEXT))
def metrics(ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ADMIN))) -> Response:
    """Prometheus text: requests and latencies per route, faces searched by decision, queue depth."""
    return PlainTextResponse(ctx.metrics.render(queue_depth(ctx.core)))


@router.get("/v1/jobs", response_model=schemas.JobPage, tags=["jobs"], **keyed("listJobs", 422))
def jobs(
    state: schemas.JobState | None = None,
    batch: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = CURSOR,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(JOBS)),
) -> dict[str, Any]:
    """The queue, newest first (as `identity jobs list`), a page at a time."""
    return listed(list_jobs(ctx.core, state.value if state else None, batch, limit, cursor))


@router.post(
    "/v1/enrollments",
    response_model=schemas.EnrollmentQueued,
    status_code=202,
    tags=["jobs"],
    **keyed("queueEnrollment", body="json"),
)
def enroll_paths(
    body: schemas.EnrollmentRequest,
    request: Request,
    idempotency_key: str | None = IDEMPOTENCY_KEY,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(ENROLL)),
) -> Any:
    """Queue folders or files the server can read, under the import roots the operator allowed; with a
    `callback_url`, the worker posts the batch's outcomes there once every job is done."""
    with idempotent(ctx, key, request, idempotency_key, json_digest(body), schemas.EnrollmentQueued) as attempt:
        if attempt.replay:
            return attempt.replay
        paths = [_allowed(ctx, p) for p in body.paths]
        try:
            inputs = choose_inputs(paths, body.person)
        except UnclearInputs as exc:
            raise ApiError(422, exc.message) from None
        return attempt.answer(_queue(ctx, inputs, body.callback_url), 202)


class UploadFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person: str = Field(description="external id the photos are of")
    callback_url: str | None = Field(None, description=CALLBACK_URL, max_length=2000)


UPLOAD_IMAGES = (ImageField("image", many=True, description="photos of the person"),)


@router.post(
    "/v1/enrollments/uploads",
    response_model=schemas.EnrollmentQueued,
    status_code=202,
    tags=["jobs"],
    openapi_extra=request_body(UPLOAD_IMAGES, UploadFields),
    **keyed("queueEnrollmentUploads", body="images"),
)
async def enroll_uploads(
    request: Request,
    body: ImagesIn = Depends(images_body(UPLOAD_IMAGES, UploadFields)),
    idempotency_key: str | None = IDEMPOTENCY_KEY,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(ENROLL)),
) -> Any:
    """Queue uploaded photos of one person (multipart, or base64 in a JSON body `{"person", "image": [...]}`);
    the server's background runner (or `identity worker`s) enrolls them."""
    person, callback_url = body.fields.person, body.fields.callback_url
    # Kept while they are a person's photos (erasure deletes them); removed if the request fails, and by
    # the job loop once a job's copy becomes no person's photo (services.uploads).
    with upload_folder(ctx.settings) as folder:
        saved = keep(body.all(), folder)
        fields = [person, callback_url or "", *(name for name, _ in saved)]
        # the bytes are read again only for a request that may be retried
        digest = await in_thread(upload_digest, fields, [path for _, path in saved]) if idempotency_key else ""
        with idempotent(ctx, key, request, idempotency_key, digest, schemas.EnrollmentQueued) as attempt:
            if attempt.replay:
                shutil.rmtree(folder, ignore_errors=True)  # the first request's copies are the queued ones
                return attempt.replay
            inputs = from_files(person, [path for _, path in saved])
            queued = attempt.answer(_queue(ctx, inputs, callback_url), 202, person_named(ctx.core, person))
    remove_uploads(ctx.settings, [row.source_path for row in inputs.unqueued])
    return queued


def _queue(ctx: ApiContext, inputs: EnrollInputs, callback_url: str | None) -> dict[str, Any]:
    batch, queued = queue_enrollment(ctx.core, inputs.specs, callback_url)
    ctx.wake_jobs()
    named = named_by(inputs)
    skipped = [
        {
            "source_path": r.source_path,
            "external_id": r.external_id,
            "reason": r.reason,
            "named_by": named.get((r.source_path, r.external_id)),
        }
        for r in inputs.unqueued
    ]
    return {"batch": batch, "queued": queued, "skipped": skipped}


@router.get("/v1/webhooks", response_model=schemas.WebhookDeliveryPage, tags=["jobs"], **keyed("listWebhooks", 422))
def webhooks(
    status: schemas.WebhookState | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = CURSOR,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(ADMIN)),
) -> dict[str, Any]:
    """The completion webhooks' delivery log, newest first (as `identity webhooks list`), a page at a time."""
    return listed(list_deliveries(ctx.core, status.value if status else None, limit, cursor))


def _allowed(ctx: ApiContext, raw: str) -> Path:
    """A path under one of the import roots (after resolving links and `..`); 403 for any other."""
    roots = [Path(r).expanduser().resolve() for r in (ctx.settings.api.import_roots or "").split(os.pathsep) if r]
    try:
        path = Path(raw).expanduser().resolve()
    # a NUL byte, a name the file system cannot hold, `~name` of no user (RuntimeError from expanduser)
    except (ValueError, OSError, RuntimeError) as exc:
        raise ApiError(422, f"{raw!r} is not a usable path: {exc}") from None
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise ApiError(
            403,
            f"{raw} is not under an import root (IDENTITY_API__IMPORT_ROOTS)",
            {"import_roots": [str(r) for r in roots]},
        )
    if not path.exists():
        raise ApiError(422, f"{raw}: no such file or folder")
    return path


@router.get("/v1/keys", response_model=schemas.ApiKeyPage, tags=["keys"], **keyed("listKeys", 422))
def keys(
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = CURSOR,
    ctx: ApiContext = Ctx,
    key: KeyRecord = Depends(caller(ADMIN)),
) -> dict[str, Any]:
    """Every key, oldest first, a page at a time (never the secret)."""
    return listed(list_keys(ctx.core, limit, cursor))


@router.post(
    "/v1/keys",
    response_model=schemas.CreatedApiKey,
    status_code=201,
    tags=["keys"],
    **keyed("createKey", 409, body="json"),
)
def new_key(
    request: schemas.ApiKeyCreate, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ADMIN))
) -> dict[str, Any]:
    """A new key, shown once in the answer."""
    expires_at = parse_expiry(request.expires_in) if request.expires_in is not None else None
    return to_json(create_key(ctx.core, request.name, request.role.value, key.name, expires_at))


@router.delete("/v1/keys/{name}", response_model=schemas.ApiKey, tags=["keys"], **keyed("revokeKey", 404, 422))
def revoke(name: str, ctx: ApiContext = Ctx, key: KeyRecord = Depends(caller(ADMIN))) -> dict[str, Any]:
    return to_json(revoke_key(ctx.core, name, key.name))
