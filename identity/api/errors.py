"""Every error answered as JSON `{"error": ..., "detail": ...}` with the status that fits; never a traceback."""

from __future__ import annotations

from typing import Any

from identity.errors import (
    IdentityError,
    ImageError,
    InvalidArgument,
    InvalidVector,
    NoFaceFound,
    NotFound,
    SchemaOutdated,
    StoreUnavailable,
)
from identity.services.access.keys import Forbidden, Unauthorized
from identity.services.refusals import CONFLICT, INVALID, UNAVAILABLE

REFUSAL_STATUS = {INVALID: 422, CONFLICT: 409, UNAVAILABLE: 503}  # what the database refused, as an HTTP status


class ApiError(Exception):
    """An HTTP answer other than success, raised by the API's own checks."""

    def __init__(self, status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


def status_of(exc: IdentityError) -> int:
    """The HTTP status of a library error: the client's fault (4xx) or the server's state (503)."""
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, (ImageError, NoFaceFound, InvalidArgument, InvalidVector)):
        return 422
    if isinstance(exc, (StoreUnavailable, SchemaOutdated)):
        return 503
    return 409  # a domain refusal: the request conflicts with what is stored (a duplicate name, a merge with itself)


def body(error: str, detail: Any = None) -> dict[str, Any]:
    return {"error": error, "detail": detail}
