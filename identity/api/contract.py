"""What `/openapi.json` promises a generated client, stated on each route's decorator.

A route takes `**keyed("listPersons", 404)` (or `**public("getHealth")`): a stable operation
id (a generated client's method name, so it never changes with a function's name), the
bearer key the route needs (the `Authorize` button of /docs, the auth of a generated
client), and the error statuses it may answer, each with the `{"error", "detail"}` body.
A route with a body (`body="json"`, `"multipart"`, or `"images"`: either of them) also refuses
any other content type with 415, rather than reporting the fields it could not find in it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBearer

from identity.api.errors import ApiError
from identity.api.schemas import ErrorBody

# Here so the schema names the scheme: the route's own key check (server.caller) still decides;
# auto_error=False leaves a missing or malformed key to that check (a 401 in the error body).
BEARER = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="idk_<key id>_<secret>",
    auto_error=False,
    description="An API key from `identity keys create` or POST /v1/keys, sent as `Authorization: Bearer ...`",
)

WHY: dict[int, str] = {
    400: "The body could not be parsed (a broken multipart or JSON body)",
    401: "No key, or an unknown, malformed, revoked or expired one",
    403: "The key's role does not allow this, or a path is outside the import roots",
    404: "No such person, face or key",
    409: "The request conflicts with what is stored (a duplicate, a merge with itself)",
    413: "The body is larger than the server's limit",
    415: "The body is not of the media type this operation takes",
    422: "A parameter or field is not valid, or no image could be used",
    429: "Too many failed authentications from this client or for this key: wait Retry-After seconds",
    503: "The server is busy or a store is unavailable: retry after Retry-After seconds",
}
KEYED = (401, 403, 429, 503)  # any route that needs a key may answer these
BODY = (400, 413, 415, 422)  # any route that reads a body may answer these
MEDIA = {
    "json": ("application/json",),
    "multipart": ("multipart/form-data",),
    "images": ("multipart/form-data", "application/json"),  # uploads, or base64 in JSON (identity.api.images_in)
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route: each status with its reason and the error body."""
    return {status: {"model": ErrorBody, "description": WHY[status]} for status in sorted(set(statuses))}


def public(operation_id: str, *statuses: int) -> dict[str, Any]:
    """Decorator arguments of a route that needs no key."""
    return {"operation_id": operation_id, "responses": errors(*statuses)}


def keyed(
    operation_id: str,
    *statuses: int,
    body: Literal["json", "multipart", "images"] | None = None,
    ok: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decorator arguments of a route that needs a key (and reads a body of the kind `body`, if given;
    `ok` describes a 200 that is not JSON)."""
    dependencies = [Security(BEARER)]
    if body:
        dependencies.append(Depends(_media(MEDIA[body])))
        statuses = (*statuses, *BODY)
    responses = errors(*KEYED, *statuses) | ({200: ok} if ok else {})
    return {"operation_id": operation_id, "responses": responses, "dependencies": dependencies}


def _media(expected: tuple[str, ...]) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        given = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if given not in expected:
            wanted = " or ".join(expected)
            raise ApiError(
                415,
                f"the body must be {wanted}, not {given or 'of no stated type'}",
                {"expected": expected[0] if len(expected) == 1 else list(expected)},
            )

    return check
