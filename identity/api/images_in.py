"""Images sent to a route either as multipart uploads or base64 strings in a JSON body, spooled alike.

A route that takes images (POST /v1/search, /v1/verify, /v1/detect) reads its body here: its
image fields become files in a scratch folder, whichever way they came, and its other fields a
validated model. The raw body's limit holds before this runs (identity.api.limits); the decoded
images are held to the same per-request byte limit as uploads, checked on the encoded length
before decoding, so a base64 body cannot decode into more than an upload may be. A string that
is not base64 is a 422 naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from identity.api.budget import check_pixels
from identity.api.context import ApiContext, Ctx
from identity.api.errors import ApiError
from identity.api.limits import Deadline
from identity.api.params import in_thread
from identity.api.uploads import save_uploads
from identity.faces import Analysed

MULTIPART = "multipart/form-data"
JSON = "application/json"
MEDIA_TYPES = (MULTIPART, JSON)
DATA_URI = re.compile(r"^data:[\w/+.-]*;base64,", re.IGNORECASE)
WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ImageField:
    """A field of the body that carries images: one, or a list (`many`)."""

    name: str
    many: bool = False
    required: bool = True
    description: str = "a photo"


@dataclass(frozen=True)
class ImagesIn:
    images: dict[str, list[tuple[str, Path]]]  # field -> (name it came under, where it was written), in order
    fields: Any  # the other fields, validated (the route's model)

    def all(self) -> list[tuple[str, Path]]:
        return [saved for entries in self.images.values() for saved in entries]


def images_body(images: tuple[ImageField, ...], model: type[BaseModel]) -> Callable[..., AsyncIterator[ImagesIn]]:
    """A route's dependency giving its body read (images spooled into a scratch folder removed after the route).
    Declared before the key check, as FastAPI's own body parameters are: a body over the caller's limit is a
    413 (identity.api.limits) before anything else is said about it."""

    async def read(request: Request, ctx: ApiContext = Ctx) -> AsyncIterator[ImagesIn]:
        with tempfile.TemporaryDirectory(prefix="identity-api-") as tmp:
            yield await read_images(request, Path(tmp), images, model, ctx.max_upload_bytes)

    return read


async def read_images(
    request: Request, folder: Path, images: tuple[ImageField, ...], model: type[BaseModel], max_bytes: int
) -> ImagesIn:
    """The body's images written under `folder`, and its other fields validated by `model`."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media == JSON:
        return await _from_json(request, folder, images, model, max_bytes)
    return await _from_form(request, folder, images, model, max_bytes)


async def _from_form(
    request: Request, folder: Path, images: tuple[ImageField, ...], model: type[BaseModel], max_bytes: int
) -> ImagesIn:
    try:
        form = await request.form()
    except Exception as exc:  # as FastAPI does for its own bodies: a body stopped at its limit answers 413 instead
        raise ApiError(400, f"the body could not be read as {MULTIPART}") from exc
    uploads: dict[str, list[UploadFile]] = {}
    for field in images:
        given = form.getlist(field.name)
        if any(not isinstance(item, UploadFile) for item in given):
            raise _invalid(field.name, "must be a file upload (or send the body as JSON with base64 images)")
        uploads[field.name] = [item for item in given if isinstance(item, UploadFile)]
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        found = form.getlist(name)
        if found:
            values[name] = found if _is_list(info.annotation) else found[-1]
    fields = _validated(model, values)
    _check_counts(images, {name: len(items) for name, items in uploads.items()})
    flat = [(field.name, upload) for field in images for upload in uploads[field.name]]
    saved = await save_uploads([upload for _, upload in flat], folder, max_bytes)
    by_field: dict[str, list[tuple[str, Path]]] = {field.name: [] for field in images}
    for (name, _), entry in zip(flat, saved):
        by_field[name].append(entry)
    return ImagesIn(by_field, fields)


async def _from_json(
    request: Request, folder: Path, images: tuple[ImageField, ...], model: type[BaseModel], max_bytes: int
) -> ImagesIn:
    try:
        raw = await request.body()
    except Exception as exc:  # as above
        raise ApiError(400, "the body could not be read") from exc
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("", "the body must be a JSON object")
    encoded: dict[str, list[str]] = {}
    for field in images:
        value = document.pop(field.name, None)
        items = [] if value is None else value if isinstance(value, list) and field.many else [value]
        if any(not isinstance(item, str) for item in items):
            kind = "a base64 string or a list of them" if field.many else "a base64 string"
            raise _invalid(field.name, f"must be {kind}")
        encoded[field.name] = items
    fields = _validated(model, document)
    _check_counts(images, {name: len(items) for name, items in encoded.items()})
    # Before any decoding: base64 holds 3 bytes per 4 characters, so the encoded length bounds the decoded size.
    if sum(len(item) for items in encoded.values() for item in items) * 3 // 4 > max_bytes + 3:
        raise _too_large(max_bytes)
    by_field: dict[str, list[tuple[str, Path]]] = {}
    total, index = 0, 0
    for field in images:
        by_field[field.name] = []
        for position, item in enumerate(encoded[field.name]):
            where = f"{field.name}[{position}]" if field.many else field.name
            data = _decoded(item, where)
            total += len(data)
            if total > max_bytes:
                raise _too_large(max_bytes)
            name = where.replace("[", "-").rstrip("]")  # the search log names the image by it
            target = folder / f"{index:03d}" / name
            target.parent.mkdir(parents=True)
            target.write_bytes(data)
            by_field[field.name].append((name, target))
            index += 1
    return ImagesIn(by_field, fields)


async def analysed_images(ctx: ApiContext, saved: list[tuple[str, Path]], deadline: Deadline) -> list[Analysed]:
    """The request's images within its pixel budget, through the inference threads (each checks the deadline)."""
    await in_thread(check_pixels, [path for _, path in saved], ctx.settings.api)
    return await in_thread(
        ctx.analyse, [path for _, path in saved], False, lambda: deadline.check("analysing the images")
    )


def keep(saved: list[tuple[str, Path]], folder: Path) -> list[tuple[str, Path]]:
    """Move spooled images into `folder` (photos enrolled are kept), one sub-folder each as uploads are written."""
    kept = []
    for index, (name, path) in enumerate(saved):
        target = folder / f"{index:03d}" / path.name
        target.parent.mkdir(parents=True)
        shutil.move(path, target)
        kept.append((name, target))
    return kept


def _decoded(text: str, where: str) -> bytes:
    """Standard base64 (padding optional, line breaks allowed, a data: URI prefix allowed)."""
    cleaned = WHITESPACE.sub("", DATA_URI.sub("", text, count=1))
    try:
        data = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(where, "is not valid base64 (standard alphabet A-Z a-z 0-9 + /)") from None
    if not data:
        raise _invalid(where, "is empty")
    return data


def _validated(model: type[BaseModel], values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error.get("loc", ()))} for error in exc.errors(include_url=False)]
        ) from None


def _check_counts(images: tuple[ImageField, ...], counts: dict[str, int]) -> None:
    for field in images:
        if field.required and counts[field.name] == 0:
            raise _invalid(field.name, "is required")
        if not field.many and counts[field.name] > 1:
            raise _invalid(field.name, f"takes one image, not {counts[field.name]}")


def _invalid(where: str, problem: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", where) if where else ("body",), "msg": problem}])


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"the images are larger than the limit of {max_bytes / 1e6:g} MB", {"limit_bytes": max_bytes})


def _is_list(annotation: Any) -> bool:
    """Whether a field takes a list (`list[str]`, `list[str] | None`): a form gives it every value sent."""
    if get_origin(annotation) is list:
        return True
    return get_origin(annotation) in (Union, UnionType) and any(get_origin(arg) is list for arg in get_args(annotation))


def request_body(images: tuple[ImageField, ...], model: type[BaseModel]) -> dict[str, Any]:
    """The route's `openapi_extra`: the body as multipart (files) or as JSON (base64 strings), same fields."""
    fields = model.model_json_schema()
    properties = fields.get("properties", {})
    required = [field.name for field in images if field.required] + fields.get("required", [])

    def image_schema(field: ImageField, item: dict[str, Any]) -> dict[str, Any]:
        one = {**item, "description": field.description}
        return {"type": "array", "items": one, "description": field.description} if field.many else one

    def schema(item: dict[str, Any], json_body: bool) -> dict[str, Any]:
        images_schema = {field.name: image_schema(field, item) for field in images}
        if json_body:  # a list field takes one string too
            images_schema = {
                field.name: {"anyOf": [item | {"description": field.description}, images_schema[field.name]]}
                if field.many
                else images_schema[field.name]
                for field in images
            }
        return {"type": "object", "properties": images_schema | properties, "required": required}

    binary = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
    encoded = {"type": "string", "contentEncoding": "base64"}
    return {
        "requestBody": {
            "required": True,
            "content": {MULTIPART: {"schema": schema(binary, False)}, JSON: {"schema": schema(encoded, True)}},
        }
    }
