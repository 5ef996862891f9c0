"""Limits that hold before routing: how much body a caller may send, and where multipart spools.

FastAPI reads (and spools) a request's body before any route dependency runs, so a key check
in a dependency comes too late to stop a large body. This plain ASGI middleware runs first:
it finds who is calling (identity.api.auth), then counts the body as it arrives, chunked
bodies included. A caller without a valid key may send `api.anonymous_body_kb`; one with a
key `api.max_upload_mb`. A Content-Length over the limit is refused at once; a body that
passes it is refused as soon as it does, and nothing more of it is read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from identity.api.auth import known_caller
from identity.api.errors import ApiError, body

DEADLINE = "identity.deadline"  # the scope key of the request's Deadline
STALE_SPOOL_S = 3600  # a scratch entry this old belongs to no live request


class BodyTooLarge(HTTPException):
    """Raised by the counted `receive`: the route stops reading (FastAPI passes HTTP errors through)."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is too large")


@dataclass
class Deadline:
    """The time a request may take; checked between images and stages (503 + Retry-After past it)."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def check(self, stage: str) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise ApiError(
                503,
                f"the request ran past its deadline of {self.seconds:g} s ({stage}): "
                "send fewer or smaller images, or try again later",
                {"deadline_s": self.seconds},
                headers={"Retry-After": str(max(1, round(self.seconds)))},
            )


class RequestLimits:
    """The body limit by caller, and each request's Deadline (in the scope, for the routes)."""

    def __init__(self, app: ASGIApp, ctx: Any) -> None:
        self.app, self.ctx = app, ctx
        api = ctx.settings.api
        self.anonymous = int(api.anonymous_body_kb * 1000)
        self.full = ctx.max_upload_bytes
        self.deadline_s = api.request_deadline_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[DEADLINE] = Deadline(self.deadline_s)
        request = HTTPConnection(scope)
        declared = declared_length(request.headers)
        limit, known = self.anonymous, False
        if declared is None or declared > self.anonymous:  # only then does it matter who is calling
            client = request.client.host if request.client else None
            known = (
                await run_in_threadpool(
                    known_caller, self.ctx, request.headers.get("authorization"), request.cookies, client
                )
                is not None
            )
            limit = self.full if known else self.anonymous
        if declared is not None and declared > limit:
            await too_large(limit, known)(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit, known)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int, known: bool) -> None:
        """Run the app on a `receive` that stops at `limit` bytes; then the app's answer is replaced by a 413."""
        received, over, started = 0, False, False

        async def counted() -> Message:
            nonlocal received, over
            if over:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge()
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's own answer to the stopped body; the 413 below goes instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except BodyTooLarge:
            pass
        if over and not started:
            await too_large(limit, known)(scope, receive, send)


def declared_length(headers: Any) -> int | None:
    """The body's announced size: Content-Length, 0 for a request with neither it nor a transfer
    encoding (no body), None when it is not known in advance (chunked)."""
    length = headers.get("content-length")
    if length is not None:
        return int(length) if length.strip().isdigit() else None
    return None if headers.get("transfer-encoding") else 0


def too_large(limit: int, known: bool) -> JSONResponse:
    whose = (
        ""
        if known
        else (" for a caller without a valid key (send `Authorization: Bearer <key>` or sign in for the full limit)")
    )
    return JSONResponse(
        body(
            f"the request body is larger than the limit of {limit / 1000:g} KB{whose}",
            {"limit_bytes": limit, "authenticated": known},
        ),
        status_code=413,
        headers={"Connection": "close"},
    )


def deadline_of(request: Request) -> Deadline:
    """The request's Deadline (a dependency); one starting now where the middleware did not run."""
    found = request.scope.get(DEADLINE)
    return (
        found if isinstance(found, Deadline) else Deadline(request.app.state.ctx.settings.api.request_deadline_seconds)
    )


def use_spool_dir(data_dir: Path) -> str | None:
    """Make `<data dir>/tmp` (0700) the process's temp folder, where multipart bodies spool and routes keep
    their scratch files; what a killed server left there is removed. Returns the folder it replaces."""
    spool = data_dir / "tmp"
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(spool, 0o700)
    stale = time.time() - STALE_SPOOL_S  # younger: maybe another server's request, on a shared data dir
    for entry in spool.iterdir():
        with contextlib.suppress(OSError):
            if entry.lstat().st_mtime >= stale:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    previous, tempfile.tempdir = tempfile.tempdir, str(spool)
    return previous
