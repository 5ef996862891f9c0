"""The FastAPI app over one App (create_api): its lifespan, middleware, routers and error handling.

What requests share lives in identity.api.context (ApiContext); routers import that module, never this one.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from identity.api import (
    docs,
    routes_clusters,
    routes_ops,
    routes_persons,
    routes_reviews,
    routes_search,
    routes_verify,
    ui,
    ui_review,
)
from identity.api.context import ApiContext
from identity.api.cors import allow_cross_origin
from identity.api.errors import REFUSAL_STATUS, ApiError, body, status_of
from identity.api.headers import headers_for, secure
from identity.api.limits import RequestLimits, use_spool_dir
from identity.api.request_id import HEADER as REQUEST_ID_HEADER
from identity.api.request_id import REQUEST_ID, RequestIds
from identity.api.ui import SignIn, ui_error
from identity.api.wording import for_api
from identity.app.core import App
from identity.errors import IdentityError
from identity.services.queue.jobs import queue_depth
from identity.services.refusals import REFUSALS, refusal_kind

log = logging.getLogger("identity.api")


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    """Multipart bodies spool under the data dir while the server runs; the inference threads are warm and
    the background worker runs before the first request, and both stop with the server."""
    ctx: ApiContext = api.state.ctx
    temp_before = use_spool_dir(ctx.settings.data_dir)
    try:
        ctx.start()
        yield
    finally:
        ctx.close()
        tempfile.tempdir = temp_before


def create_api(core: App) -> FastAPI:
    """The HTTP API over `core` (which the caller opened, and closes after the server stops)."""
    api = FastAPI(
        title="identity",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # docs.py's /docs
        description="Face identity search: enroll people from photos, ask who is in a photo, audit what is held.",
    )
    api.state.ctx = ApiContext(core)
    _handle_errors(api)
    _measure(api)
    secure(api)  # identity.api.headers: CSP, no framing, no-store, the UI's stylesheet
    api.add_middleware(RequestLimits, ctx=api.state.ctx)  # before any route reads the body
    for module in (
        routes_search,
        routes_verify,
        routes_clusters,
        routes_persons,
        routes_ops,
        routes_reviews,
        ui,
        ui_review,
        docs,
    ):
        api.include_router(module.router)
    allow_cross_origin(api, core.settings.api.cors_origins)
    api.add_middleware(RequestIds)  # outermost: every response and log line of a request has its id
    return api


def create_metrics_api(ctx: ApiContext) -> FastAPI:
    """/metrics alone, without a key: for a separate bind address (setting api.metrics_bind) that only
    the monitoring network reaches."""
    metrics = FastAPI(title="identity metrics", openapi_url=None, docs_url=None, redoc_url=None)

    @metrics.get("/metrics", response_class=PlainTextResponse)
    def scrape() -> str:
        return ctx.metrics.render(queue_depth(ctx.core))

    return metrics


def _handle_errors(api: FastAPI) -> None:
    def on_page(request: Request) -> bool:
        return request.url.path.startswith("/ui")

    @api.exception_handler(SignIn)
    async def sign_in(request: Request, exc: SignIn) -> Response:
        return RedirectResponse("/ui/login", status_code=303)

    @api.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        if on_page(request):
            page = ui_error(request, exc.status, exc.error)
            page.headers.update(exc.headers)  # Retry-After on a page too
            return page
        return JSONResponse(body(exc.error, exc.detail), status_code=exc.status, headers=exc.headers)

    @api.exception_handler(IdentityError)
    async def identity_error(request: Request, exc: IdentityError) -> Response:
        status = status_of(exc)
        if on_page(request):
            return ui_error(request, status, exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        detail = {k: v for k, v in exc.as_dict().items() if k not in ("error", "exit_code")}
        return JSONResponse(body(for_api(exc.message), detail), status_code=status, headers=headers)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")} for e in exc.errors()
        ]
        if on_page(request):
            return ui_error(request, 422, "; ".join(f"{p['where']}: {p['problem']}" for p in problems))
        return JSONResponse(body("the request is not valid", problems), status_code=422)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(body(str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def refused(request: Request, exc: Exception) -> Response:
        """Input the database cannot hold is the client's to fix (or, a lost connection, a 503), not a 500."""
        found = refusal_kind(exc)
        if found is None:
            return await unexpected(request, exc)
        kind, reason = found
        status = REFUSAL_STATUS[kind]
        if on_page(request):
            return ui_error(request, status, f"the database refused it: {reason}")
        return JSONResponse(body(f"the database refused it: {reason}"), status_code=status)

    for kind in REFUSALS:  # handled here, in the app: a handler of Exception itself runs after the server logs a crash
        api.add_exception_handler(kind, refused)

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        route = getattr(request.scope.get("route"), "path", "unmatched")  # the template: a path can name a person
        log.exception("unexpected error on %s %s", request.method, route)
        # Answered outside every middleware, so this adds what they add to every other response.
        headers = {**headers_for(request.url.path), REQUEST_ID_HEADER: REQUEST_ID.get()}
        return JSONResponse(
            body("internal error: see the server's log", type(exc).__name__), status_code=500, headers=headers
        )


def _measure(api: FastAPI) -> None:
    @api.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Any]) -> Any:
        ctx: ApiContext = request.app.state.ctx  # bodies over their limit were refused before (api.limits)
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        ctx.metrics.observe(
            request.method, getattr(route, "path", "unmatched"), response.status_code, time.perf_counter() - started
        )
        return response
