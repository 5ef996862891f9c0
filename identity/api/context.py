"""What every request shares (ApiContext): the App, the deployment, the inference threads, the background worker.

Concurrency: detection and embedding run in the inference executor's threads (identity.faces.executor),
sized to the cores, each with its own pipeline; a request that finds them and their queue (setting
api.queue_limit) full gets 503 with Retry-After. SQL sessions are per request. The embedded engine
serializes the calls on each collection itself (identity.store.vectors.edge). Queued jobs run in a
background thread through the worker service (identity.services.queue.worker.run_worker), on the same
inference threads; with the embedded store the server is the one process holding the shard.

Routers import this module, never the app module (identity.api.app), which imports the routers.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from fastapi import Depends, Request

from identity.api.errors import ApiError
from identity.api.metrics import Metrics
from identity.api.session import Sessions
from identity.api.throttle import Throttle
from identity.app.core import App
from identity.app.deployment import Deployment
from identity.faces import Analysed, ExecutorBusy, FacePipeline, ThreadExecutor, build_pipeline
from identity.services.queue.loop import EnrollSummary, JobResult
from identity.services.queue.worker import run_worker
from identity.services.search.identify import SearchFailure, SearchOptions, SearchResult, search_one

log = logging.getLogger("identity.api")

JOB_POLL_S = 5.0  # how often the background worker looks at the queue when nobody wakes it


def deployment_of(core: App) -> Deployment:
    """The one way the API reaches the active model's deployment: prepared for writes (the server runs jobs, and
    back-fills a store's missing templates at start, so its reads never find them missing)."""
    return core.deployment(write=True)


class ApiContext:
    """What every request shares: the App, the active deployment, the inference threads and the metrics."""

    def __init__(self, core: App) -> None:
        self.core = core
        self.settings = core.settings
        self.metrics = Metrics()
        self.sessions = Sessions(self.settings)  # the review UI's
        self.throttle = Throttle(self.settings.api.auth_failures, self.settings.api.auth_window_s)
        self.max_upload_bytes = int(self.settings.api.max_upload_mb * 1_000_000)
        threads = self.settings.api.inference_workers or os.cpu_count() or 1
        self.inference = ThreadExecutor(self._new_pipeline, threads, self.settings.api.queue_limit)
        self._wake, self._stop = threading.Event(), threading.Event()
        self._jobs = threading.Thread(target=self._run_jobs, name="identity-jobs", daemon=True)

    def deployment(self) -> Deployment:
        """The active model's deployment, shared by the request threads and the background worker: the App keeps
        it (prepared once, under its lock) until a model switch releases it, then prepares the new one."""
        return deployment_of(self.core)

    def _new_pipeline(self) -> FacePipeline:
        """An inference thread's own pipeline, of the deployment's model: models are not shared between threads."""
        return build_pipeline(self.deployment().settings)

    def analyse(
        self, paths: Sequence[Path], wait: bool = False, before_each: Callable[[], None] | None = None
    ) -> list[Analysed]:
        """A request's images through the inference threads, as one task; 503 when they and their queue
        are full (unless `wait`)."""
        try:
            return list(self.inference.analyse(paths, wait=wait, chunk=max(len(paths), 1), before_each=before_each))
        except ExecutorBusy:
            raise ApiError(
                503,
                "the server is busy: too many images wait for the face models",
                {"retry_after_s": 1},
                headers={"Retry-After": "1"},
            ) from None

    def search(self, path: Path, outcome: Analysed, name: str, options: SearchOptions) -> SearchResult | SearchFailure:
        """The search service on one analysed image (the CLI's search_one), its faces counted by decision."""
        _, found = outcome
        self.deployment()  # prepared for writes once (the App keeps it): the service's read finds it
        result = search_one(self.core, str(path), options, found, name)
        if isinstance(result, SearchResult):
            for face in result.faces:
                self.metrics.decision(face.decision)
        return result

    def wake_jobs(self) -> None:
        """Jobs were queued: the background worker takes them now rather than at its next look."""
        self._wake.set()

    def _run_jobs(self) -> None:
        """The server's background work: the worker service until the server stops; a failure (a store that is
        down) is logged and the worker started again after a pause, the jobs waiting queued meanwhile."""
        while not self._stop.is_set():
            try:
                run_worker(
                    self.core,
                    poll=JOB_POLL_S,
                    stop=self._stop,
                    wake=self._wake,
                    analyse=self.inference.analyse,
                    reindex=False,
                    summary=_Tally(batch="*"),
                )
            except Exception:
                log.exception("background work stopped; it tries again in %s s", JOB_POLL_S)
                self._stop.wait(JOB_POLL_S)

    def start(self) -> None:
        """Warm the inference threads (the first requests do not pay for loading models), start the worker."""
        self.inference.warm()
        self._jobs.start()

    def close(self) -> None:
        """Stop the background worker (its claimed jobs handed back), then the inference threads."""
        self._stop.set()
        self._wake.set()
        if self._jobs.is_alive():
            self._jobs.join()
        self.inference.close()


class _Tally(EnrollSummary):
    """The background worker's figures without its per-job results: a server runs for months, and each
    job's result is its row in the queue."""

    def add(self, result: JobResult) -> None:
        super().add(result)
        self.results.clear()


def ctx_of(request: Request) -> ApiContext:
    return request.app.state.ctx


Ctx = Depends(ctx_of)
