"""The FastAPI app over one App: state, keys and roles, errors as JSON, bounded inference, metrics.

Concurrency: detection and embedding run in a pool of threads sized to the cores, each
with its own pipeline; a request that finds the pool and its queue (setting
api.queue_limit) full gets 503 with Retry-After. SQL sessions are per request. Each
vector collection is used by one thread at a time (the embedded engine's shard is not
shared between threads), which costs little: a search's vector work takes milliseconds,
its inference tens. Enrollment jobs queued through the API run in a background thread
of the server, which with the embedded store is the one process holding the shard.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from identity.api.auth import bearer_key, identify
from identity.api.cors import allow_cross_origin
from identity.api.errors import ApiError, body, status_of
from identity.api.headers import headers_for, secure
from identity.api.limits import Deadline, RequestLimits, use_spool_dir
from identity.api.metrics import Metrics
from identity.api.request_id import HEADER as REQUEST_ID_HEADER, REQUEST_ID, RequestIds
from identity.api.session import Sessions
from identity.api.throttle import Throttle
from identity.api.wording import for_api
from identity.app.core import App
from identity.errors import IdentityError, ImageError
from identity.faces import FacePipeline, ImageFaces, build_pipeline, load_image
from identity.app.deployment import Deployment
from identity.services.enrollment.writer import EnrollmentWriter
from identity.services.queue.loop import process_queue
from identity.services.curation.erasure import retry_pending
from identity.services.access.keys import Forbidden, KeyRecord
from identity.services.refusals import CONFLICT, INVALID, REFUSALS, UNAVAILABLE, refusal_kind
from identity.services.search.identify import SearchOptions, SearchResult, search_faces

log = logging.getLogger("identity.api")

Analysed = ImageFaces | ImageError
REFUSAL_STATUS = {INVALID: 422, CONFLICT: 409, UNAVAILABLE: 503}
JOB_POLL_S = 5.0  # how often the background runner looks at the queue when nobody wakes it


class _Stopping(Exception):
    """The server is stopping: the background runner's current run hands its jobs back."""


def _serialized(dep: Deployment) -> Deployment:
    return dataclasses.replace(dep, index=Serialized(dep.index), templates=Serialized(dep.templates),
                               unknown=Serialized(dep.unknown) if dep.unknown else None)


class ApiContext:
    """What every request shares: the App, the active deployment, the inference pool and the metrics."""

    def __init__(self, core: App) -> None:
        self.core = core
        core.share_between_threads(_serialized)  # the request threads use the collections one call at a time
        self.settings = core.settings
        self.metrics = Metrics()
        self.sessions = Sessions(self.settings)  # the review UI's
        self.throttle = Throttle(self.settings.api.auth_failures, self.settings.api.auth_window_s)
        self.max_upload_bytes = int(self.settings.api.max_upload_mb * 1_000_000)
        workers = self.settings.api.inference_workers or os.cpu_count() or 1
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="identity-inference")
        self._slots = threading.BoundedSemaphore(workers + max(self.settings.api.queue_limit, 0))
        self._local = threading.local()
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._runner = threading.Thread(target=self._run_jobs, name="identity-jobs", daemon=True)
        self._temp_before = tempfile.tempdir  # restored at close: multipart spools under the data dir meanwhile

    def deployment(self) -> Deployment:
        """The active model's deployment, prepared for writes (the server runs jobs)."""
        return self.core.deployment(write=True)

    def search(self, found: ImageFaces, options: SearchOptions) -> SearchResult:
        """The search service on analysed faces, counted in the metrics by decision."""
        result = search_faces(self.core, found, options)
        for face in result.faces:
            self.metrics.decision(face.decision)
        return result

    def analyse_stream(self, paths: Iterator[str]) -> Iterator[tuple[str, Analysed]]:
        """process_queue's `analyse`: the queue's images through the inference pool, a few at a time."""
        while chunk := list(itertools.islice(paths, 4)):
            if self._stopping.is_set():
                raise _Stopping()  # process_queue hands the claimed jobs back
            yield from zip(chunk, self.analyse([Path(p) for p in chunk], wait=True))

    def wake_jobs(self) -> None:
        """Jobs were queued: the background runner takes them now rather than at its next look."""
        self._wake.set()

    def _run_jobs(self) -> None:
        """The server's background enrollment: queued jobs through the queue loop, until the server stops."""
        while not self._stopping.is_set():
            self._wake.wait(JOB_POLL_S)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                dep = self.deployment()
                retry_pending(self.core)  # erasures a failure left pending, as `identity worker` rounds do
                process_queue(self.core, EnrollmentWriter(dep), None, 1, analyse=self.analyse_stream)
            except _Stopping:
                return
            except Exception:  # a store that is down: the next look tries again, the jobs wait queued
                log.exception("background enrollment stopped; it tries again in %s s", JOB_POLL_S)

    def analyse(self, paths: Sequence[Path], wait: bool = False, deadline: Deadline | None = None) -> list[Analysed]:
        """Detect and embed the images in the inference pool; 503 when it and its queue are full (unless `wait`),
        or when `deadline` passes before an image is started."""
        if not self._slots.acquire(blocking=wait):
            raise ApiError(503, "the server is busy: too many images wait for the face models",
                           {"retry_after_s": 1}, headers={"Retry-After": "1"})
        try:
            return self._pool.submit(self._analyse, list(paths), deadline).result()
        finally:
            self._slots.release()

    def _analyse(self, paths: list[Path], deadline: Deadline | None) -> list[Analysed]:
        pipeline = self._pipeline()
        found: list[Analysed] = []
        for path in paths:
            if deadline is not None:
                deadline.check("analysing the images")  # frees this thread for the next request
            try:
                [result] = pipeline.process([load_image(path)])
                found.append(result)
            except ImageError as exc:
                found.append(exc)
        return found

    def _pipeline(self) -> FacePipeline:
        """Each inference thread's own pipeline (of the deployment's model): models are not shared between threads."""
        if getattr(self._local, "pipeline", None) is None:
            self._local.pipeline = build_pipeline(self.deployment().settings)
        return self._local.pipeline

    def warm(self) -> None:
        """Start every inference thread and load its models, so the first requests do not pay for it."""
        ready = threading.Barrier(self._workers)

        def load() -> None:
            self._pipeline().load()
            ready.wait(timeout=300)  # holds this thread until all are started, so each gets one task

        for future in [self._pool.submit(load) for _ in range(self._workers)]:
            future.result()

    def start(self) -> None:
        self._temp_before = use_spool_dir(self.settings.data_dir)
        self.warm()
        self._runner.start()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._runner.is_alive():
            self._runner.join()
        self._pool.shutdown(wait=True)
        tempfile.tempdir = self._temp_before


class Serialized:
    """A vector collection whose calls from several threads run one at a time."""

    def __init__(self, index: Any) -> None:
        self._index = index
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._index, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return call


def caller(permission: str) -> Callable[..., KeyRecord]:
    """A route's dependency: the request's key, which must allow `permission` (401/403 otherwise, logged)."""

    def check(request: Request) -> KeyRecord:
        route = getattr(request.scope.get("route"), "path", "?")  # the template: a path can name a person
        client = request.client.host if request.client else None
        try:
            record = identify(request.app.state.ctx, bearer_key(request.headers.get("authorization")), client)
        except IdentityError as exc:
            log.warning("401 %s %s: %s", request.method, route, exc.message)
            raise
        if not record.allows(permission):
            log.warning("403 %s %s: key %r (role %s) lacks %s", request.method, route, record.name,
                        record.role, permission)
            raise Forbidden(f"the key {record.name!r} (role {record.role}) may not do this ({permission} needed)")
        return record

    return check


def create_api(core: App) -> FastAPI:
    """The HTTP API over `core` (which the caller opened, and closes after the server stops)."""
    from identity.api import docs, routes_ops, routes_persons, routes_search, ui, ui_review

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        api.state.ctx.start()
        yield
        api.state.ctx.close()

    api = FastAPI(title="identity", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,  # docs.py's /docs
                  description="Face identity search: enroll people from photos, ask who is in a photo, audit what is held.")
    api.state.ctx = ApiContext(core)
    _handle_errors(api)
    _measure(api)
    secure(api)  # identity.api.headers: CSP, no framing, no-store, the UI's stylesheet
    api.add_middleware(RequestLimits, ctx=api.state.ctx)  # before any route reads the body
    for module in (routes_search, routes_persons, routes_ops, ui, ui_review, docs):
        api.include_router(module.router)
    allow_cross_origin(api, core.settings.api.cors_origins)
    api.add_middleware(RequestIds)  # outermost: every response and log line of a request has its id
    return api


def create_metrics_api(ctx: ApiContext) -> FastAPI:
    """/metrics alone, without a key: for a separate bind address (setting api.metrics_bind) that only
    the monitoring network reaches."""
    from fastapi.responses import PlainTextResponse

    from identity.services.queue.jobs import queue_depth

    metrics = FastAPI(title="identity metrics", openapi_url=None, docs_url=None, redoc_url=None)

    @metrics.get("/metrics", response_class=PlainTextResponse)
    def scrape() -> str:
        return ctx.metrics.render(queue_depth(ctx.core))

    return metrics


def _handle_errors(api: FastAPI) -> None:
    from identity.api.ui import SignIn, ui_error

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
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg")} for e in exc.errors()]
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
        return JSONResponse(body("internal error: see the server's log", type(exc).__name__), status_code=500,
                            headers=headers)


def _measure(api: FastAPI) -> None:
    @api.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Any]) -> Any:
        ctx: ApiContext = request.app.state.ctx  # bodies over their limit were refused before (api.limits)
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        ctx.metrics.observe(request.method, getattr(route, "path", "unmatched"), response.status_code,
                            time.perf_counter() - started)
        return response


def ctx_of(request: Request) -> ApiContext:
    return request.app.state.ctx


Ctx = Depends(ctx_of)
